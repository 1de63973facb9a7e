"""Approval requests at the hub, and the relay of agency-signed grants to the nodes.

An analyst asks to use a recipe version on named agencies' data, within bounds, for a purpose.
Each involved agency's admin sees the request, and approves (possibly narrowing the bounds) or
rejects it with a reason. An approval is a grant **signed with the agency key** on the admin's
side; the hub checks the signature against the key the agency's node told it, keeps the grant and
relays it to the node, which verifies it again and is the one that enforces it. The hub cannot
mint, widen or move a grant: it holds no agency key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from datalab.errors import BadRequest, Conflict, InvalidParameters, NotFound
from datalab.grants import GrantRefused, validate_bounds, verify_grant, verify_revocation, widened
from datalab.wire import (
    AgencyApprovals,
    AgencyDecision,
    ApprovalRequestIn,
    ApprovalRequestView,
    DecisionState,
    SignedApproval,
    SignedRevocation,
)
from lab_server import audit
from lab_server.db import Base, Database, Node
from lab_server.permissions import Actor, Gate, Resource, decide
from lab_server.recipe_book import RecipeBook


class AgencyKeyRow(Base):
    """The public agency key a node reported: what the hub checks uploaded grants against."""

    __tablename__ = "agency_keys"

    agency: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[float] = mapped_column(Float)


class ApprovalRequestRow(Base):
    __tablename__ = "approval_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    analyst: Mapped[str] = mapped_column(String(64), index=True)
    recipe: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(32))
    code_sha256: Mapped[str] = mapped_column(String(64))
    agencies: Mapped[list[str]] = mapped_column(JSON)
    bounds: Mapped[dict[str, Any]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class DecisionRow(Base):
    __tablename__ = "approval_decisions"
    __table_args__ = (UniqueConstraint("request_id", "agency"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("approval_requests.id"), index=True)
    agency: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16))
    by: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)
    bounds: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    approval_id: Mapped[str | None] = mapped_column(String(32))


class GrantRow(Base):
    """A signed grant as the agency's admin uploaded it (relayed verbatim to the node)."""

    __tablename__ = "approval_grants"

    approval_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    agency: Mapped[str] = mapped_column(String(64), index=True)
    recipe: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(32))
    signed: Mapped[dict[str, Any]] = mapped_column(JSON)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    revocation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)


class ApprovalService:
    def __init__(self, db: Database, book: RecipeBook, gate: Gate) -> None:
        self._db = db
        self._book = book
        self._gate = gate

    # ------------------------------------------------------------------ analyst

    def request(self, actor: Actor, body: ApprovalRequestIn) -> ApprovalRequestView:
        self._gate.ensure_allowed(actor, "request-approval")
        recipe = self._book.get(body.recipe, body.version)
        if not body.agencies:
            raise InvalidParameters("agencies: name at least one agency whose data you need")
        if not body.purpose.strip():
            raise InvalidParameters("purpose: say what the results are for")
        try:
            bounds = validate_bounds(body.bounds)
        except BadRequest as exc:
            raise InvalidParameters(exc.message) from None
        names = {p.name for p in recipe.manifest.params}
        unknown = sorted(set(bounds) - names)
        if unknown:
            raise InvalidParameters(f"bounds: {recipe.key} has no parameter {unknown[0]!r}")
        agencies = sorted(set(body.agencies))
        now = time.time()
        with self._db.write() as session:
            known = set(session.execute(select(Node.agency)).scalars())
            missing = [a for a in agencies if a not in known]
            if missing:
                raise InvalidParameters(f"agencies: no node is registered for {missing[0]!r}")
            row = ApprovalRequestRow(
                id=uuid.uuid4().hex,
                analyst=actor.name,
                recipe=recipe.name,
                version=recipe.version,
                code_sha256=self._book.code_sha256(recipe),
                agencies=agencies,
                bounds=bounds,
                purpose=body.purpose.strip(),
                created_at=now,
            )
            session.add(row)
            for agency in agencies:
                session.add(
                    DecisionRow(request_id=row.id, agency=agency, state=DecisionState.PENDING.value)
                )
            audit.record(
                session,
                audit.ApprovalRequested(
                    actor=actor.name,
                    request_id=row.id,
                    recipe=row.recipe,
                    version=row.version,
                    code_sha256=row.code_sha256,
                    agencies=agencies,
                    bounds=bounds,
                    purpose=row.purpose,
                ),
            )
            session.flush()
            return _view(session, row)

    # ------------------------------------------------------------------ reading

    def list(self, actor: Actor) -> list[ApprovalRequestView]:
        """The requests this person may see: their own, their agency's, or (auditor) all."""
        with self._db.read() as session:
            rows = session.execute(
                select(ApprovalRequestRow).order_by(ApprovalRequestRow.created_at.desc())
            ).scalars()
            return [_view(session, r) for r in rows if self._may_read(actor, r)]

    def get(self, actor: Actor, request_id: str) -> ApprovalRequestView:
        with self._db.read() as session:
            row = session.get(ApprovalRequestRow, request_id)
            if row is None:
                raise NotFound(f"no approval request {request_id}")
            view = _view(session, row)
        if not self._may_read(actor, row):
            if decide(actor, "approve-recipe", Resource(agency=actor.agency)).allowed:
                # an agency admin looking at another agency's request: say so
                self._gate.ensure_allowed(actor, "approve-recipe", Resource(agency=row.agencies[0]))
            self._gate.ensure_allowed(actor, "read-own-request", Resource(owner=row.analyst))
        return view

    def _may_read(self, actor: Actor, row: ApprovalRequestRow) -> bool:
        if decide(actor, "read-own-request", Resource(owner=row.analyst)).allowed:
            return True
        return any(
            decide(actor, "approve-recipe", Resource(agency=a)).allowed for a in row.agencies
        )

    # ------------------------------------------------------------------ agency admins

    def approve(self, actor: Actor, request_id: str, signed: SignedApproval) -> AgencyDecision:
        """Keep an agency-signed grant answering ``request_id`` (checked, then relayed)."""
        grant = signed.grant
        self._gate.ensure_allowed(actor, "approve-recipe", Resource(agency=grant.agency))
        with self._db.write() as session:
            row = self._request_row(session, request_id)
            decision = self._decision(session, row, grant.agency)
            if grant.request_id != row.id:
                raise BadRequest("the grant names another request")
            if (grant.recipe, grant.version, grant.code_sha256) != (
                row.recipe,
                row.version,
                row.code_sha256,
            ):
                raise BadRequest(
                    f"the grant is for {grant.key} at sha256 {grant.code_sha256[:12]}…; the "
                    f"request is for {row.recipe}@{row.version} at {row.code_sha256[:12]}…"
                )
            wider = widened(row.bounds, grant.bounds)
            if wider:
                raise BadRequest(
                    "an approval may only narrow the requested bounds: " + "; ".join(wider)
                )
            self._verify(session, lambda key: verify_grant(signed, grant.agency, key), grant.agency)
            if session.get(GrantRow, grant.approval_id) is not None:
                raise Conflict(f"approval {grant.approval_id} was already uploaded")
            now = time.time()
            session.add(
                GrantRow(
                    approval_id=grant.approval_id,
                    agency=grant.agency,
                    recipe=grant.recipe,
                    version=grant.version,
                    signed=signed.model_dump(mode="json"),
                    created_at=now,
                )
            )
            decision.state = DecisionState.APPROVED.value
            decision.by, decision.at = actor.name, now
            decision.bounds, decision.approval_id, decision.reason = (
                grant.bounds,
                grant.approval_id,
                grant.note or None,
            )
            audit.record(
                session,
                audit.ApprovalGranted(
                    actor=actor.name,
                    request_id=row.id,
                    approval_id=grant.approval_id,
                    agency=grant.agency,
                    recipe=grant.recipe,
                    version=grant.version,
                    code_sha256=grant.code_sha256,
                    bounds=grant.bounds,
                    signature=signed.signature,
                ),
            )
            return _decision_view(decision)

    def reject(self, actor: Actor, request_id: str, reason: str) -> AgencyDecision:
        agency = actor.agency or ""
        self._gate.ensure_allowed(actor, "approve-recipe", Resource(agency=actor.agency))
        if not reason.strip():
            raise InvalidParameters("reason: say why the request is rejected")
        with self._db.write() as session:
            row = self._request_row(session, request_id)
            decision = self._decision(session, row, agency)
            if decision.state != DecisionState.PENDING.value:
                raise Conflict(f"agency {agency} already decided: {decision.state}")
            decision.state = DecisionState.REJECTED.value
            decision.by, decision.at, decision.reason = actor.name, time.time(), reason.strip()
            audit.record(
                session,
                audit.ApprovalRejected(
                    actor=actor.name, request_id=row.id, agency=agency, reason=reason.strip()
                ),
            )
            return _decision_view(decision)

    def revoke(self, actor: Actor, signed: SignedRevocation) -> None:
        rev = signed.revocation
        self._gate.ensure_allowed(actor, "approve-recipe", Resource(agency=rev.agency))
        with self._db.write() as session:
            grant = session.get(GrantRow, rev.approval_id)
            if grant is None or grant.agency != rev.agency:
                raise NotFound(f"no approval {rev.approval_id} of agency {rev.agency}")
            self._verify(
                session, lambda key: verify_revocation(signed, rev.agency, key), rev.agency
            )
            grant.revoked = True
            grant.revocation = signed.model_dump(mode="json")
            decision = session.execute(
                select(DecisionRow).where(DecisionRow.approval_id == rev.approval_id)
            ).scalar_one_or_none()
            if decision is not None:
                decision.state = DecisionState.REVOKED.value
                decision.by, decision.at, decision.reason = actor.name, time.time(), rev.reason
            audit.record(
                session,
                audit.ApprovalRevoked(
                    actor=actor.name,
                    approval_id=rev.approval_id,
                    agency=rev.agency,
                    recipe=grant.recipe,
                    version=grant.version,
                    reason=rev.reason,
                    signature=signed.signature,
                ),
            )

    def grant(self, approval_id: str) -> SignedApproval:
        with self._db.read() as session:
            row = session.get(GrantRow, approval_id)
            if row is None:
                raise NotFound(f"no approval {approval_id}")
            return SignedApproval.model_validate(row.signed)

    # ------------------------------------------------------------------ nodes

    def set_agency_key(self, agency: str, public_key: str) -> None:
        key = public_key.strip().lower()
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise InvalidParameters("public_key must be 64 hex characters (a raw Ed25519 key)")
        with self._db.write() as session:
            row = session.get(AgencyKeyRow, agency)
            if row is not None and row.public_key == key:
                return
            if row is None:
                row = AgencyKeyRow(agency=agency, public_key=key, updated_at=time.time())
                session.add(row)
            row.public_key, row.updated_at = key, time.time()
            audit.record(
                session, audit.AgencyKeyRegistered(actor=agency, agency=agency, public_key=key)
            )

    def for_node(self, agency: str) -> AgencyApprovals:
        with self._db.read() as session:
            rows = session.execute(
                select(GrantRow).where(GrantRow.agency == agency).order_by(GrantRow.created_at)
            ).scalars()
            out = AgencyApprovals()
            for row in rows:
                out.approvals.append(SignedApproval.model_validate(row.signed))
                if row.revocation is not None:
                    out.revocations.append(SignedRevocation.model_validate(row.revocation))
            return out

    # ------------------------------------------------------------------ helpers

    def _request_row(self, session: Session, request_id: str) -> ApprovalRequestRow:
        row = session.get(ApprovalRequestRow, request_id)
        if row is None:
            raise NotFound(f"no approval request {request_id}")
        return row

    def _decision(self, session: Session, row: ApprovalRequestRow, agency: str) -> DecisionRow:
        decision = session.execute(
            select(DecisionRow).where(
                DecisionRow.request_id == row.id, DecisionRow.agency == agency
            )
        ).scalar_one_or_none()
        if decision is None:
            raise BadRequest(f"request {row.id} does not involve agency {agency}")
        return decision

    def _verify(self, session: Session, check: Callable[[str], object], agency: str) -> None:
        """Run ``check`` with the agency key the node reported; 409 without one, 400 if bad."""
        key = session.get(AgencyKeyRow, agency)
        if key is None:
            raise Conflict(
                f"agency {agency}'s node has not told the hub its agency key yet; start the node"
            )
        try:
            check(key.public_key)
        except GrantRefused as exc:
            raise BadRequest(str(exc)) from None


def _decision_view(d: DecisionRow) -> AgencyDecision:
    return AgencyDecision(
        agency=d.agency,
        state=DecisionState(d.state),
        by=d.by,
        at=d.at,
        reason=d.reason,
        bounds=d.bounds,
        approval_id=d.approval_id,
    )


def _view(session: Session, row: ApprovalRequestRow) -> ApprovalRequestView:
    decisions = session.execute(
        select(DecisionRow).where(DecisionRow.request_id == row.id).order_by(DecisionRow.agency)
    ).scalars()
    return ApprovalRequestView(
        request_id=row.id,
        analyst=row.analyst,
        recipe=row.recipe,
        version=row.version,
        code_sha256=row.code_sha256,
        agencies=list(row.agencies),
        bounds=dict(row.bounds),
        purpose=row.purpose,
        created_at=row.created_at,
        decisions=[_decision_view(d) for d in decisions],
    )
