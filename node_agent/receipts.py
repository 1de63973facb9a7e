"""The node's side of the tamper-evident audit: check each receipt, keep it, remember the last
checkpoint.

For every partial it posts, the node gets back its hub log entry, an inclusion proof and a
signed checkpoint (plus a consistency proof from the last checkpoint it saw). It checks them
(``datalab.log_proofs.check_receipt``) and writes an ``audit_receipt`` entry to its own signed
log — the node's evidence, which ``datalab audit verify --node-log`` cross-checks against the
hub's entries. A receipt that fails is logged as ``audit_proof_failed`` and warned about loudly;
the node does not adopt that checkpoint, so the next consistency check is still against the
last good one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from datalab.canonical import digest
from datalab.log_proofs import RECEIPT_EVENT, ReceiptRefused, check_receipt, entry_leaf
from datalab.wire import AuditReceipt, SignedCheckpoint, SignedPartial
from node_agent.log import LocalLog

logger = logging.getLogger("node_agent.receipts")

CHECKPOINT_FILE = "last_checkpoint.json"


class ReceiptKeeper:
    def __init__(self, state: Path, log: LocalLog, hub_key: Callable[[], str | None]) -> None:
        self._path = Path(state) / CHECKPOINT_FILE
        self._log = log
        self._hub_key = hub_key

    def last(self) -> SignedCheckpoint | None:
        try:
            return SignedCheckpoint.model_validate_json(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def last_size(self) -> int:
        last = self.last()
        return last.checkpoint.tree_size if last else 0

    def take(self, receipt: AuditReceipt | None, partial: SignedPartial) -> bool:
        """Check and keep ``receipt`` for ``partial``; False (logged) when it proves nothing."""
        task_id = partial.partial.task_id
        hub_key = self._hub_key()
        try:
            if receipt is None:
                raise ReceiptRefused("the hub sent no audit receipt")
            if hub_key is None:
                raise ReceiptRefused("no hub key pinned to check the checkpoint")
            check_receipt(
                receipt,
                hub_key,
                task_id=task_id,
                partial_sha256=digest(partial.partial.model_dump(mode="json")),
                last=self.last(),
            )
        except ReceiptRefused as exc:
            self._log.append("audit_proof_failed", {"task_id": task_id, "reason": str(exc)})
            logger.error("audit receipt for task %s refused: %s", task_id, exc)
            return False
        assert receipt is not None
        self._log.append(
            RECEIPT_EVENT,
            {
                "task_id": task_id,
                "seq": receipt.entry.seq,
                "leaf_hash": entry_leaf(receipt.entry).hex(),
                "checkpoint": receipt.checkpoint.model_dump(mode="json"),
            },
        )
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(receipt.checkpoint.model_dump_json(), encoding="utf-8")
        tmp.replace(self._path)
        return True
