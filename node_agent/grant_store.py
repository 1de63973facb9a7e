"""The agency's approvals on its node: signed grants (and revocations) this node will honour.

A grant says which recipe version, at which code hash and within which parameter bounds, the
agency lets run on its data. It is signed with the **agency key** (``agency_key.pem``, the
admin's, apart from the node key); the node trusts the public half pinned in
``agency_key.pub``. Grants arrive two ways: the admin signs one locally (``datalab node
approve``), or the admin approves a request at the hub and the signed grant is relayed to the
node's poll. Either way the node stores a grant only after verifying its signature, and verifies
it again before every task — so a hub that forges, alters or replays a grant (for another
agency, another version, or after a revocation) is refused, and so is an edited approvals file.

The store is a small JSON file in the node's state folder, read before every task (an approval
or revocation takes effect without a restart). Writes go to a temporary file that replaces the
old one, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from datalab.errors import BadRequest, TaskRefused
from datalab.grants import (
    GrantRefused,
    agency_key,
    new_grant,
    pinned_agency_key,
    sign_grant,
    sign_revocation,
    validate_bounds,
    verify_grant,
    verify_revocation,
)
from datalab.wire import AgencyApprovals, ApprovalGrant, SignedApproval, SignedRevocation, Task
from recipes.contract import check_bounds

__all__ = ["APPROVALS_FILE", "ApprovalStore", "GrantRefused", "validate_bounds"]

#: The file, in the node's state folder, that holds the approvals.
APPROVALS_FILE = "approvals.json"


class _ApprovalFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: the agency these approvals belong to (None until a store that knows it writes the file).
    agency: str | None = None
    #: the current grant per recipe@version.
    approvals: dict[str, SignedApproval] = Field(default_factory=dict)
    #: every revocation seen, by approval id: a revoked grant is never accepted again.
    revocations: dict[str, SignedRevocation] = Field(default_factory=dict)


class ApprovalStore:
    """The approvals of one agency, in ``state_dir/approvals.json``.

    ``agency`` is checked against the agency recorded in the file, so one agency's approvals
    cannot be loaded by another agency's node by a mistaken ``--state``.
    """

    def __init__(self, state_dir: Path, agency: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / APPROVALS_FILE
        self.agency = agency
        self._lock = threading.Lock()
        #: recipe@version → why the last grant the hub delivered for it was refused.
        self.refused: dict[str, str] = {}

    def public_key(self) -> str | None:
        """The pinned agency key grants must verify against."""
        return pinned_agency_key(self.state_dir)

    # -- reading

    def _load(self) -> _ApprovalFile:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _ApprovalFile(agency=self.agency)
        data = _ApprovalFile.model_validate_json(text)
        if self.agency is not None and data.agency not in (None, self.agency):
            raise ValueError(f"{self.path} holds approvals of agency {data.agency!r}")
        return data

    def signed(self) -> list[SignedApproval]:
        return sorted(self._load().approvals.values(), key=lambda s: s.grant.key)

    def list(self) -> list[ApprovalGrant]:
        return [s.grant for s in self.signed()]

    def get(self, recipe: str, version: str) -> ApprovalGrant | None:
        signed = self._load().approvals.get(f"{recipe}@{version}")
        return signed.grant if signed else None

    # -- writing: the admin signs locally with the agency key

    def approve(
        self,
        recipe: str,
        version: str,
        code_sha256: str,
        bounds: Mapping[str, Any] | None = None,
        approved_by: str = "",
        note: str = "",
    ) -> ApprovalGrant:
        """Sign (with the agency key in the state folder) and store a grant of ``recipe@version``
        at ``code_sha256``, replacing an earlier grant of it."""
        agency = self.agency or self._load().agency
        if not agency:
            raise BadRequest("say which agency these approvals are for (--agency)")
        grant = new_grant(
            agency=agency,
            recipe=recipe,
            version=version,
            code_sha256=code_sha256,
            bounds=bounds,
            approved_by=approved_by,
            note=note,
        )
        return self.accept(sign_grant(agency_key(self.state_dir), grant))

    def revoke(self, recipe: str, version: str, revoked_by: str = "", reason: str = "") -> bool:
        """Withdraw the grant of ``recipe@version`` with a signed revocation; False if none."""
        current = self.get(recipe, version)
        if current is None:
            return False
        self.accept_revocation(
            sign_revocation(agency_key(self.state_dir), current, revoked_by, reason)
        )
        return True

    # -- writing: grants and revocations relayed by the hub (verified before they are kept)

    def accept(self, signed: SignedApproval) -> ApprovalGrant:
        """Store ``signed`` if the agency key signed it for this agency and it is not revoked;
        GrantRefused otherwise. An older grant never replaces a newer one of the same recipe."""
        with self._lock:
            data = self._load()
            agency = self.agency or data.agency or signed.grant.agency
            grant = verify_grant(signed, agency, self.public_key())
            if grant.approval_id in data.revocations:
                raise GrantRefused(f"approval {grant.approval_id[:12]} of {grant.key} was revoked")
            current = data.approvals.get(grant.key)
            if current is not None and current.grant.issued_at > grant.issued_at:
                return current.grant
            data.agency = data.agency or agency
            data.approvals[grant.key] = signed
            self._write(data)
        self.refused.pop(grant.key, None)
        return grant

    def accept_revocation(self, signed: SignedRevocation) -> bool:
        """Record a verified revocation; True when it withdrew the current grant."""
        with self._lock:
            data = self._load()
            agency = self.agency or data.agency or signed.revocation.agency
            rev = verify_revocation(signed, agency, self.public_key())
            data.agency = data.agency or agency
            data.revocations[rev.approval_id] = signed
            key = f"{rev.recipe}@{rev.version}"
            current = data.approvals.get(key)
            withdrew = current is not None and current.grant.approval_id == rev.approval_id
            if withdrew:
                del data.approvals[key]
            self._write(data)
        return withdrew

    def sync(self, bundle: AgencyApprovals) -> tuple[list[str], list[str]]:
        """Take what the hub relays: (changes made, refusals with their reasons).

        Revocations first, so a grant revoked in the same bundle is never accepted.
        """
        data = self._load()
        changes: list[str] = []
        refusals: list[str] = []
        for rev in bundle.revocations:
            if rev.revocation.approval_id in data.revocations:
                continue
            try:
                if self.accept_revocation(rev):
                    changes.append(f"revoked {rev.revocation.recipe}@{rev.revocation.version}")
            except GrantRefused as exc:
                refusals.append(str(exc))
        data = self._load()
        known = list(data.approvals.values())
        for signed in bundle.approvals:
            grant = signed.grant
            if signed in known:  # the very grant already kept (whole content, not just its id)
                continue
            if grant.approval_id in data.revocations and signed.grant.agency == self.agency:
                continue  # a revoked grant relayed again: ignored (and never honoured)
            try:
                self.accept(signed)
                changes.append(f"approved {grant.key} ({grant.approval_id[:12]})")
            except GrantRefused as exc:
                self.refused[grant.key] = str(exc)
                refusals.append(str(exc))
        return changes, refusals

    def _write(self, data: _ApprovalFile) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".approvals-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data.model_dump(mode="json"), fh, indent=2, ensure_ascii=False)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- the check before every task

    def check(self, task: Task, params: Mapping[str, Any] | None = None) -> ApprovalGrant:
        """The verified grant covering ``task``; TaskRefused (with the fix) if there is none.

        ``params`` are the task's parameters after validation (defaults filled in), so a bound
        also applies to a parameter the analyst left at its default.
        """
        key = f"{task.recipe}@{task.version}"
        data = self._load()
        agency = self.agency or data.agency or "this agency"
        how = f"approve it with: datalab node approve --agency {agency} --recipe {key}"
        signed = data.approvals.get(key)
        if signed is None:
            why = self.refused.get(key)
            extra = f" (the hub relayed an approval that was refused: {why})" if why else ""
            raise TaskRefused(
                f"recipe {key} (sha256 {task.code_sha256[:12]}…) is not approved by agency "
                f"{agency}{extra}; {how}"
            )
        try:
            grant = verify_grant(signed, agency, self.public_key())
        except GrantRefused as exc:
            raise TaskRefused(f"recipe {key}: stored approval refused: {exc}") from None
        if grant.approval_id in data.revocations:
            raise TaskRefused(f"recipe {key}: agency {agency} revoked its approval")
        if grant.recipe != task.recipe or grant.version != task.version:
            raise TaskRefused(f"recipe {key}: the stored approval is for {grant.key}")
        if grant.code_sha256 != task.code_sha256:
            raise TaskRefused(
                f"recipe {key} (sha256 {task.code_sha256[:12]}…) is not approved by agency "
                f"{agency}: the approval pins sha256 {grant.code_sha256[:12]}…; "
                f"re-{how}"
            )
        problems = check_bounds(task.params if params is None else params, grant.bounds)
        if problems:
            raise TaskRefused(
                f"parameters outside agency {agency}'s approval of {key}: " + "; ".join(problems)
            )
        return grant
