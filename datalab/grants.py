"""Agency-signed approvals and revocations: how they are signed, checked and bounded.

Shared by the node (which stores a grant only after verifying it, and re-verifies before every
task), the hub (which checks an upload against the agency's key before relaying it) and the
agency admin's tools (which sign). The agency key is the agency's own Ed25519 key, kept by its
admin apart from the node key, so neither the hub nor a stolen node key can mint an approval.

Signatures are domain-separated: a grant is signed as ``{"approval": grant}`` and a revocation
as ``{"revocation": ...}``, so one can never be passed off as the other.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datalab.errors import BadRequest
from datalab.signing import BadSignature, SigningKey, load_or_create_key, verify_value
from datalab.wire import ApprovalGrant, Revocation, SignedApproval, SignedRevocation

AGENCY_KEY_FILE = "agency_key.pem"
AGENCY_PUBLIC_KEY_FILE = "agency_key.pub"

_BOUND_KEYS = {"minimum", "maximum", "choices"}


class GrantRefused(Exception):
    """A grant or revocation that must not be trusted; the message says why (public)."""


def validate_bounds(bounds: Any) -> dict[str, dict[str, Any]]:
    """Bounds as given by an admin or analyst, checked for shape; BadRequest naming the fault."""
    if not isinstance(bounds, Mapping):
        raise BadRequest('bounds must be a JSON object like {"level": {"choices": ["street"]}}')
    out: dict[str, dict[str, Any]] = {}
    for name, bound in bounds.items():
        if not isinstance(bound, Mapping) or not bound or set(bound) - _BOUND_KEYS:
            raise BadRequest(
                f"bounds for {name!r} must be an object with minimum, maximum and/or choices"
            )
        for edge in ("minimum", "maximum"):
            if edge in bound and (
                isinstance(bound[edge], bool) or not isinstance(bound[edge], int | float)
            ):
                raise BadRequest(f"bounds for {name!r}: {edge} must be a number")
        if "choices" in bound and not isinstance(bound["choices"], list):
            raise BadRequest(f"bounds for {name!r}: choices must be a list")
        out[str(name)] = dict(bound)
    return out


def widened(requested: Mapping[str, Any], approved: Mapping[str, Any]) -> list[str]:
    """Where ``approved`` bounds are wider than ``requested`` ones (an admin may only narrow)."""
    problems = []
    for name, want in requested.items():
        got = approved.get(name)
        if got is None:
            problems.append(f"{name}: the request bounds it, the approval does not")
            continue
        if "choices" in want and not set(got.get("choices", [None])) <= set(want["choices"]):
            problems.append(f"{name}: choices beyond the requested {want['choices']}")
        if "minimum" in want and got.get("minimum", float("-inf")) < want["minimum"]:
            problems.append(f"{name}: minimum below the requested {want['minimum']}")
        if "maximum" in want and got.get("maximum", float("inf")) > want["maximum"]:
            problems.append(f"{name}: maximum above the requested {want['maximum']}")
    return problems


# ------------------------------------------------------------------ the agency key


def agency_key(state_dir: Path) -> SigningKey:
    """The agency's signing key in ``state_dir`` (created with its public half on first use)."""
    key = load_or_create_key(Path(state_dir) / AGENCY_KEY_FILE)
    pub = Path(state_dir) / AGENCY_PUBLIC_KEY_FILE
    if not pub.exists():
        pub.write_text(key.public_key + "\n", encoding="ascii")
    return key


def pinned_agency_key(state_dir: Path) -> str | None:
    """The agency public key a node trusts (``agency_key.pub``), or None when none is pinned."""
    try:
        text = (Path(state_dir) / AGENCY_PUBLIC_KEY_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return text or None


# ------------------------------------------------------------------ signing


def sign_grant(key: SigningKey, grant: ApprovalGrant) -> SignedApproval:
    return SignedApproval(grant=grant, signature=key.sign_value(_grant_message(grant)))


def new_grant(
    *,
    agency: str,
    recipe: str,
    version: str,
    code_sha256: str,
    bounds: Mapping[str, Any] | None,
    approved_by: str,
    request_id: str | None = None,
    note: str = "",
) -> ApprovalGrant:
    """A fresh grant with a unique id and the current time (checked for shape)."""
    if len(code_sha256) != 64 or any(c not in "0123456789abcdef" for c in code_sha256):
        raise BadRequest("code_sha256 must be 64 lower-case hex characters")
    return ApprovalGrant(
        approval_id=uuid.uuid4().hex,
        agency=agency,
        recipe=recipe,
        version=version,
        code_sha256=code_sha256,
        bounds=validate_bounds(bounds or {}),
        issued_at=round(time.time(), 6),
        approved_by=approved_by or "unknown",
        request_id=request_id,
        note=note,
    )


def sign_revocation(
    key: SigningKey, grant: ApprovalGrant, revoked_by: str, reason: str = ""
) -> SignedRevocation:
    revocation = Revocation(
        approval_id=grant.approval_id,
        agency=grant.agency,
        recipe=grant.recipe,
        version=grant.version,
        revoked_at=round(time.time(), 6),
        revoked_by=revoked_by or "unknown",
        reason=reason,
    )
    return SignedRevocation(
        revocation=revocation, signature=key.sign_value(_revocation_message(revocation))
    )


# ------------------------------------------------------------------ checking


def verify_grant(signed: SignedApproval, agency: str, public_key: str | None) -> ApprovalGrant:
    """The grant, if it is for ``agency`` and signed by ``public_key``; GrantRefused if not."""
    grant = signed.grant
    if public_key is None:
        raise GrantRefused(f"agency {agency} has no agency key pinned on this node")
    if grant.agency != agency:
        raise GrantRefused(
            f"approval {grant.approval_id[:12]} is agency {grant.agency!r}'s, not {agency!r}'s"
        )
    try:
        verify_value(public_key, _grant_message(grant), signed.signature)
    except BadSignature:
        raise GrantRefused(
            f"approval {grant.approval_id[:12]} of {grant.key} is not signed by agency "
            f"{agency}'s key"
        ) from None
    return grant


def verify_revocation(signed: SignedRevocation, agency: str, public_key: str | None) -> Revocation:
    rev = signed.revocation
    if public_key is None:
        raise GrantRefused(f"agency {agency} has no agency key pinned on this node")
    if rev.agency != agency:
        raise GrantRefused(f"revocation is agency {rev.agency!r}'s, not {agency!r}'s")
    try:
        verify_value(public_key, _revocation_message(rev), signed.signature)
    except BadSignature:
        raise GrantRefused(
            f"revocation of {rev.approval_id[:12]} is not signed by agency {agency}'s key"
        ) from None
    return rev


def _grant_message(grant: ApprovalGrant) -> dict[str, Any]:
    return {"approval": grant.model_dump(mode="json")}


def _revocation_message(rev: Revocation) -> dict[str, Any]:
    return {"revocation": rev.model_dump(mode="json")}
