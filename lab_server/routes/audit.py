"""The audit log for auditors: read entries in order, and verify the hash chain."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from datalab.wire import AuditEntry
from lab_server.audit import verify_chain
from lab_server.db import AuditRow
from lab_server.deps import CurrentUser, Hub

router = APIRouter(tags=["audit"])


@router.get("/audit")
def read_audit(
    user: CurrentUser,
    hub: Hub,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[AuditEntry]:
    hub.gate.ensure_allowed(user, "read-audit")
    with hub.db.read() as session:
        rows = session.execute(
            select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(limit)
        ).scalars()
        return [
            AuditEntry(
                seq=r.seq,
                ts=r.ts,
                event=r.event,
                actor=r.actor,
                data=json.loads(r.data),
                prev_hash=r.prev_hash,
                hash=r.hash,
            )
            for r in rows
        ]


@router.get("/audit/verify")
def verify(user: CurrentUser, hub: Hub) -> dict[str, Any]:
    hub.gate.ensure_allowed(user, "read-audit")
    with hub.db.read() as session:
        check = verify_chain(session)
        entries = session.execute(select(func.count()).select_from(AuditRow)).scalar_one()
    return {
        "ok": check.ok,
        "entries": entries,
        "first_bad": check.first_bad,
        "message": check.message,
    }
