"""The audit log: typed events, recorded through one function into a sha256 hash chain.

Every request, task, answer, release and refusal becomes one entry. Each entry's hash covers the
previous entry's hash and the canonical JSON of the entry itself, so editing, inserting or
deleting any entry (other than truncating the tail — the signed chain head closes that later)
breaks verification from that point on.

What goes in: event names, actors, job/task ids, recipe parameters, counts, digests and public
reasons. What never goes in: rows, identifiers or result tables — a release is logged by the
sha256 of its table, which the analyst's copy can be checked against.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, NamedTuple

from sqlalchemy import event, select, text
from sqlalchemy.orm import Session, SessionTransaction

from datalab.canonical import canonical_bytes
from datalab.log_proofs import chain_hash
from lab_server.db import AuditRow

GENESIS_HASH = "0" * 64
#: the hub's own actor name, for entries no person or node caused.
HUB = "hub"
#: a PostgreSQL advisory lock key that serialises appends across hub processes.
_PG_AUDIT_LOCK = 0x6461_7461_6C61_62
#: where a transaction keeps the chain head it has read or written (Session.info key).
_HEAD = "datalab_audit_head"


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """Base of every event; ``name`` is what the log's ``event`` column holds."""

    name: ClassVar[str]
    actor: str

    def data(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("actor")
        return out


@dataclass(frozen=True, kw_only=True)
class UserCreated(AuditEvent):
    name: ClassVar[str] = "user_created"
    user: str
    role: str
    agency: str | None


@dataclass(frozen=True, kw_only=True)
class AccessRefused(AuditEvent):
    name: ClassVar[str] = "access_refused"
    action: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class NodeRegistered(AuditEvent):
    name: ClassVar[str] = "node_registered"
    agency: str
    version: str
    key_sha256: str
    min_cell: int
    datasets: list[str]
    reregistration: bool


@dataclass(frozen=True, kw_only=True)
class RegistrationRefused(AuditEvent):
    name: ClassVar[str] = "registration_refused"
    agency: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class NodeRemoved(AuditEvent):
    name: ClassVar[str] = "node_removed"
    agency: str


@dataclass(frozen=True, kw_only=True)
class JobRequested(AuditEvent):
    name: ClassVar[str] = "job_requested"
    job_id: str
    recipe: str
    version: str
    code_sha256: str
    params: dict[str, Any]
    agencies: list[str]


@dataclass(frozen=True, kw_only=True)
class JobRejected(AuditEvent):
    """A job request refused before any job existed (unknown recipe, bad parameters)."""

    name: ClassVar[str] = "job_rejected"
    recipe: str
    code: str
    message: str


@dataclass(frozen=True, kw_only=True)
class TaskIssued(AuditEvent):
    name: ClassVar[str] = "task_issued"
    job_id: str
    task_id: str
    agency: str
    dataset: str
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class TaskDelivered(AuditEvent):
    name: ClassVar[str] = "task_delivered"
    job_id: str
    task_id: str


@dataclass(frozen=True, kw_only=True)
class PartialReceived(AuditEvent):
    name: ClassVar[str] = "partial_received"
    job_id: str
    task_id: str
    partial_sha256: str
    query_set_size: int | None


@dataclass(frozen=True, kw_only=True)
class TaskRefused(AuditEvent):
    """A node answered ``refused`` or ``failed``; ``status`` says which."""

    name: ClassVar[str] = "task_refused"
    job_id: str
    task_id: str
    status: str
    reason: str
    partial_sha256: str


@dataclass(frozen=True, kw_only=True)
class TaskTimedOut(AuditEvent):
    name: ClassVar[str] = "task_timed_out"
    job_id: str
    task_id: str
    agency: str
    timeout_s: float


@dataclass(frozen=True, kw_only=True)
class ResultReleased(AuditEvent):
    name: ClassVar[str] = "result_released"
    job_id: str
    result_sha256: str
    min_cell: int
    suppressed_cells: int
    agencies: list[str]
    missing_agencies: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class JobFailed(AuditEvent):
    name: ClassVar[str] = "job_failed"
    job_id: str
    code: str
    message: str


@dataclass(frozen=True, kw_only=True)
class JobRefused(AuditEvent):
    name: ClassVar[str] = "job_refused"
    job_id: str
    message: str


@dataclass(frozen=True, kw_only=True)
class BudgetDebited(AuditEvent):
    """Epsilon taken from an analyst's privacy budget for a job, before it runs."""

    name: ClassVar[str] = "budget_debited"
    job_id: str
    scope: str
    epsilon: float
    cap: float


@dataclass(frozen=True, kw_only=True)
class BudgetRefunded(AuditEvent):
    """Epsilon given back: the job failed before any node returned a result (nothing learned)."""

    name: ClassVar[str] = "budget_refunded"
    job_id: str
    scope: str
    epsilon: float


@dataclass(frozen=True, kw_only=True)
class BudgetCapSet(AuditEvent):
    name: ClassVar[str] = "budget_cap_set"
    agency: str
    scope: str
    analyst: str
    epsilon: float


@dataclass(frozen=True, kw_only=True)
class DisclosureSettingSet(AuditEvent):
    name: ClassVar[str] = "disclosure_setting_set"
    agency: str
    setting: str
    value: Any


@dataclass(frozen=True, kw_only=True)
class ApprovalRequested(AuditEvent):
    name: ClassVar[str] = "approval_requested"
    request_id: str
    recipe: str
    version: str
    code_sha256: str
    agencies: list[str]
    bounds: dict[str, Any]
    purpose: str


@dataclass(frozen=True, kw_only=True)
class ApprovalGranted(AuditEvent):
    """An agency-signed grant the hub accepted and relays (its signature is kept)."""

    name: ClassVar[str] = "approval_granted"
    request_id: str
    approval_id: str
    agency: str
    recipe: str
    version: str
    code_sha256: str
    bounds: dict[str, Any]
    signature: str


@dataclass(frozen=True, kw_only=True)
class ApprovalRejected(AuditEvent):
    name: ClassVar[str] = "approval_rejected"
    request_id: str
    agency: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class ApprovalRevoked(AuditEvent):
    name: ClassVar[str] = "approval_revoked"
    approval_id: str
    agency: str
    recipe: str
    version: str
    reason: str
    signature: str


@dataclass(frozen=True, kw_only=True)
class AgencyKeyRegistered(AuditEvent):
    name: ClassVar[str] = "agency_key_registered"
    agency: str
    public_key: str


#: the chain hash, defined once (``datalab.log_proofs``) so auditors' tools recompute it exactly.
entry_hash = chain_hash


@dataclass(frozen=True, kw_only=True)
class PsiRelayed(AuditEvent):
    """What the PSI relay carried for one matching job, written when the job ends: message
    counts and sizes per sending agency, never their contents."""

    name: ClassVar[str] = "psi_relayed"
    job_id: str
    messages: int
    bytes: int
    by_sender: dict[str, dict[str, int]]


@dataclass(frozen=True, kw_only=True)
class TrainingStarted(AuditEvent):
    """The hub submitted a training job's Flower app to its SuperLink."""

    name: ClassVar[str] = "training_started"
    job_id: str
    run_id: str
    fab_sha256: str
    agencies: list[str]
    rounds: int


@dataclass(frozen=True, kw_only=True)
class TrainingRoundDone(AuditEvent):
    """One secure round ended: how many nodes' updates the aggregate holds (never an update)."""

    name: ClassVar[str] = "training_round"
    job_id: str
    round: int
    nodes: int
    failures: int


@dataclass(frozen=True, kw_only=True)
class FlowerAppRefused(AuditEvent):
    """A node's gate refused to run a Flower app whose hash its agency has not approved."""

    name: ClassVar[str] = "flower_app_refused"
    agency: str
    run_id: str
    fab_sha256: str
    job_id: str | None
    reason: str


@dataclass(frozen=True, kw_only=True)
class ModelReleased(AuditEvent):
    """A trained model went to the analyst: its digest, rounds, nodes and epsilon."""

    name: ClassVar[str] = "model_released"
    job_id: str
    result_sha256: str
    fab_sha256: str
    rounds: int
    agencies: list[str]
    epsilon: float | None = None


def record(session: Session, event: AuditEvent) -> AuditRow:
    """Append ``event`` to the chain inside the caller's transaction (the one seam for audit).

    Appends are serialised: by the write lock and ``BEGIN IMMEDIATE`` on SQLite, by an advisory
    transaction lock on PostgreSQL; the primary key on ``seq`` makes any race fail, not fork.
    """
    head = session.info.get(_HEAD)
    if head is None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
        last = session.execute(
            select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
        ).first()
        head = (last[0], last[1]) if last else (0, GENESIS_HASH)
    seq, prev_hash = head[0] + 1, head[1]
    ts = round(time.time(), 6)
    data = event.data()
    data_json = canonical_bytes(data).decode("utf-8")
    # Hash what will be read back, so verification recomputes exactly these bytes.
    data = json.loads(data_json)
    row = AuditRow(
        seq=seq,
        ts=ts,
        event=event.name,
        actor=event.actor,
        data=data_json,
        prev_hash=prev_hash,
        hash=entry_hash(prev_hash, seq, ts, event.name, event.actor, data),
    )
    session.add(row)
    # The head is remembered for the rest of this transaction (we hold the append lock), so a
    # transaction writing several entries reads the chain head once; it is dropped at its end.
    session.info[_HEAD] = (seq, row.hash)
    return row


@event.listens_for(Session, "after_transaction_end")
def _forget_head(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_HEAD, None)


class ChainCheck(NamedTuple):
    ok: bool
    first_bad: int | None
    message: str


def verify_chain(session: Session) -> ChainCheck:
    """Recompute the chain from the first entry: (ok, first bad seq or None, message)."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    count = 0
    rows = session.execute(select(AuditRow).order_by(AuditRow.seq)).scalars()
    for row in rows:
        count += 1
        if row.seq != expected_seq:
            return ChainCheck(
                False, expected_seq, f"entry {expected_seq} is missing (next is {row.seq})"
            )
        if row.prev_hash != expected_prev:
            return ChainCheck(False, row.seq, f"entry {row.seq} does not follow its predecessor")
        try:
            data = json.loads(row.data)
        except ValueError:
            return ChainCheck(False, row.seq, f"entry {row.seq} has unreadable data")
        if entry_hash(row.prev_hash, row.seq, row.ts, row.event, row.actor, data) != row.hash:
            return ChainCheck(False, row.seq, f"entry {row.seq} was altered (hash mismatch)")
        expected_prev = row.hash
        expected_seq += 1
    return ChainCheck(True, None, f"{count} entries verified")
