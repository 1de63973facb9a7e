"""The audit log's Merkle tree at the hub: signed checkpoints and receipts for nodes.

Leaves are the audit entries in order (``datalab.log_proofs.entry_leaf``). Leaf hashes are
cached in memory and extended as the log grows, so a receipt costs the new entries' hashes and
one proof, not a re-read of the log. The cache is only a speed-up: ``datalab audit verify``
recomputes everything from the stored entries.
"""

from __future__ import annotations

import json
import threading
import time

from sqlalchemy import Float, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from datalab import merkle
from datalab.errors import InvalidParameters, NotFound
from datalab.log_proofs import ANSWER_EVENTS, entry_leaf, sign_checkpoint
from datalab.signing import SigningKey
from datalab.wire import AuditEntry, AuditReceipt, Checkpoint, SignedCheckpoint
from lab_server.db import AuditRow, Base, Database


class CheckpointRow(Base):
    """A checkpoint the hub signed and published (kept so auditors can check every one)."""

    __tablename__ = "audit_checkpoints"

    tree_size: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    root_hash: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[float] = mapped_column(Float)
    signature: Mapped[str] = mapped_column(String(128))

    def signed(self) -> SignedCheckpoint:
        return SignedCheckpoint(
            checkpoint=Checkpoint(
                tree_size=self.tree_size, root_hash=self.root_hash, issued_at=self.issued_at
            ),
            signature=self.signature,
        )


def to_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        ts=row.ts,
        event=row.event,
        actor=row.actor,
        data=json.loads(row.data),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


class Transparency:
    def __init__(self, db: Database, hub_key: SigningKey) -> None:
        self._db = db
        self._key = hub_key
        self._tree = merkle.Tree()
        self._lock = threading.Lock()

    def _refresh(self, session: Session) -> int:
        """Extend the cached tree with entries appended since; returns its size."""
        with self._lock:
            rows = session.execute(
                select(AuditRow).where(AuditRow.seq > len(self._tree)).order_by(AuditRow.seq)
            ).scalars()
            for row in rows:
                if row.seq != len(self._tree) + 1:
                    break
                self._tree.append(entry_leaf(to_entry(row)))
            return len(self._tree)

    def publish(self) -> SignedCheckpoint:
        """Sign and store a checkpoint of the log as it is now (or return the one that exists)."""
        with self._db.write() as session:
            size = self._refresh(session)
            row = session.get(CheckpointRow, size)
            if row is None:
                with self._lock:
                    root_hash = self._tree.root(size).hex()
                signed = sign_checkpoint(
                    self._key,
                    Checkpoint(
                        tree_size=size,
                        root_hash=root_hash,
                        issued_at=round(time.time(), 6),
                    ),
                )
                cp = signed.checkpoint
                session.add(
                    CheckpointRow(
                        tree_size=cp.tree_size,
                        root_hash=cp.root_hash,
                        issued_at=cp.issued_at,
                        signature=signed.signature,
                    )
                )
                return signed
            return row.signed()

    def checkpoints(self) -> list[SignedCheckpoint]:
        with self._db.read() as session:
            rows = session.execute(select(CheckpointRow).order_by(CheckpointRow.tree_size))
            return [r.signed() for r in rows.scalars()]

    def consistency(self, first: int, second: int) -> list[str]:
        with self._db.read() as session:
            size = self._refresh(session)
        if not 0 <= first <= second <= size:
            raise InvalidParameters(f"sizes must satisfy 0 <= {first} <= {second} <= {size}")
        with self._lock:
            return merkle.hexes(self._tree.consistency(first, second))

    def receipt(self, agency: str, task_id: str, since: int) -> AuditReceipt:
        """The receipt for ``agency``'s answer to ``task_id``: entry, inclusion, checkpoint, and
        consistency from the tree size the node last saw."""
        checkpoint = self.publish()
        with self._db.read() as session:
            row = session.execute(
                select(AuditRow)
                .where(
                    AuditRow.event.in_(ANSWER_EVENTS),
                    AuditRow.actor == agency,
                    AuditRow.data.contains(task_id),
                )
                .order_by(AuditRow.seq.desc())
                .limit(1)
            ).scalar_one_or_none()
            self._refresh(session)
        if row is None:
            raise NotFound(f"no answer to task {task_id} in the audit log")
        size = checkpoint.checkpoint.tree_size
        since = since if 0 <= since <= size else 0
        with self._lock:
            inclusion = self._tree.inclusion(row.seq - 1, size)
            consistency = self._tree.consistency(since, size)
        return AuditReceipt(
            entry=to_entry(row),
            leaf_index=row.seq - 1,
            inclusion=merkle.hexes(inclusion),
            checkpoint=checkpoint,
            consistency=merkle.hexes(consistency),
            since=since,
        )
