"""The audit log for auditors: read entries in order, and verify the hash chain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from datalab.log_proofs import verify_log
from datalab.wire import AuditEntry, SignedCheckpoint
from lab_server.audit import verify_chain
from lab_server.audit_filter import OUTCOMES, AuditFilter
from lab_server.checkpoints import to_entry
from lab_server.db import AuditRow
from lab_server.deps import CurrentUser, Hub

router = APIRouter(tags=["audit"])


@router.get("/audit")
def read_audit(
    user: CurrentUser,
    hub: Hub,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    analyst: str | None = None,
    agency: str | None = None,
    recipe: str | None = None,
    outcome: Annotated[str | None, Query(description=", ".join(OUTCOMES))] = None,
    since: float | None = None,
    until: float | None = None,
) -> list[AuditEntry]:
    """Entries after ``after``, optionally filtered (by analyst, agency, recipe, outcome, time)."""
    hub.gate.ensure_allowed(user, "read-audit")
    wanted = AuditFilter(analyst, agency, recipe, outcome, since, until)
    stmt = select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq)
    if not wanted.active:
        stmt = stmt.limit(limit)
    with hub.db.read() as session:
        out = []
        for row in session.execute(stmt).scalars():
            entry = to_entry(row)
            if wanted.matches(entry):
                out.append(entry)
                if len(out) >= limit:
                    break
        return out


@router.get("/audit/verify")
def verify(user: CurrentUser, hub: Hub) -> dict[str, Any]:
    """Recompute the chain and the Merkle tree from the stored entries and check every signed
    checkpoint against them (the nodes' receipts are checked by ``datalab audit verify``)."""
    hub.gate.ensure_allowed(user, "read-audit")
    hub.transparency.publish()
    with hub.db.read() as session:
        check = verify_chain(session)
        entries = [
            to_entry(r) for r in session.execute(select(AuditRow).order_by(AuditRow.seq)).scalars()
        ]
    result = verify_log(entries, hub.transparency.checkpoints(), hub.hub_key.public_key)
    out = result.as_dict()
    if not check.ok and (result.first_bad is None or check.first_bad < result.first_bad):
        out.update(ok=False, first_bad=check.first_bad, message=check.message)
    return out


@router.get("/audit/checkpoints")
def checkpoints(user: CurrentUser, hub: Hub) -> list[SignedCheckpoint]:
    """Every checkpoint the hub signed (a fresh one for the log as it is now included)."""
    hub.gate.ensure_allowed(user, "read-audit")
    hub.transparency.publish()
    return hub.transparency.checkpoints()
