"""The audit log as a verifiable Merkle log: entry hashing, signed checkpoints, node receipts,
and the full verification ``datalab audit verify`` runs.

Each hub entry is chained (sha256 over the previous hash and the entry's canonical JSON) *and*
is a leaf of an RFC 9162 Merkle tree (``datalab.merkle``). The hub signs checkpoints (tree size,
root). A node that posts a result gets a receipt — its entry, an inclusion proof and a signed
checkpoint, plus a consistency proof from the last checkpoint it saw — and keeps it in its own
signed log. Verification recomputes everything from the entries alone and trusts nothing the
hub says about itself: only its signatures, and the checkpoints the nodes hold.

Pure functions over plain data: no HTTP, no database, so the hub, the nodes and an auditor's
machine run exactly the same checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datalab import merkle
from datalab.canonical import canonical_bytes
from datalab.signing import BadSignature, SigningKey, verify_value
from datalab.wire import AuditEntry, AuditReceipt, Checkpoint, SignedCheckpoint

GENESIS_HASH = "0" * 64
#: node-log events that carry a receipt, and the hub events a node's answer becomes.
RECEIPT_EVENT = "audit_receipt"
ANSWER_EVENTS = ("partial_received", "task_refused")


def chain_hash(
    prev_hash: str, seq: int, ts: float, event: str, actor: str, data: dict[str, Any]
) -> str:
    """sha256(prev_hash + canonical JSON of the entry without its hash)."""
    body = canonical_bytes(
        {"seq": seq, "ts": ts, "event": event, "actor": actor, "data": data, "prev_hash": prev_hash}
    )
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def entry_leaf(entry: AuditEntry) -> bytes:
    """The Merkle leaf hash of one entry: sha256(0x00 || canonical JSON of the whole entry)."""
    return merkle.leaf_hash(canonical_bytes(entry.model_dump(mode="json")))


def sign_checkpoint(key: SigningKey, checkpoint: Checkpoint) -> SignedCheckpoint:
    return SignedCheckpoint(
        checkpoint=checkpoint,
        signature=key.sign_value({"checkpoint": checkpoint.model_dump(mode="json")}),
    )


def checkpoint_signed(signed: SignedCheckpoint, hub_public_key: str) -> bool:
    try:
        verify_value(
            hub_public_key,
            {"checkpoint": signed.checkpoint.model_dump(mode="json")},
            signed.signature,
        )
    except BadSignature:
        return False
    return True


# ------------------------------------------------------------------ a node checks its receipt


class ReceiptRefused(Exception):
    """A receipt that does not prove what it claims; the node logs it and warns."""


def check_receipt(
    receipt: AuditReceipt,
    hub_public_key: str,
    *,
    task_id: str,
    partial_sha256: str,
    last: SignedCheckpoint | None,
) -> None:
    """Raise ReceiptRefused unless the receipt proves *this* answer is in the signed log, and
    the new checkpoint extends ``last`` (the last one this node saw)."""
    entry = receipt.entry
    if entry.data.get("task_id") != task_id or entry.data.get("partial_sha256") != partial_sha256:
        raise ReceiptRefused("the receipt's entry is not this node's answer")
    if entry.event not in ANSWER_EVENTS:
        raise ReceiptRefused(f"the receipt's entry is a {entry.event!r}, not an answer")
    if chain_hash(entry.prev_hash, entry.seq, entry.ts, entry.event, entry.actor, entry.data) != (
        entry.hash
    ):
        raise ReceiptRefused("the receipt's entry hash does not match its content")
    cp = receipt.checkpoint
    if not checkpoint_signed(cp, hub_public_key):
        raise ReceiptRefused("the checkpoint is not signed by the pinned hub key")
    size, root = cp.checkpoint.tree_size, bytes.fromhex(cp.checkpoint.root_hash)
    if receipt.leaf_index != entry.seq - 1 or not merkle.verify_inclusion(
        receipt.leaf_index, size, entry_leaf(entry), merkle.unhex(receipt.inclusion), root
    ):
        raise ReceiptRefused(f"entry {entry.seq} is not included in the signed tree of {size}")
    if last is not None:
        old = last.checkpoint
        if receipt.since != old.tree_size or not merkle.verify_consistency(
            old.tree_size,
            size,
            bytes.fromhex(old.root_hash),
            root,
            merkle.unhex(receipt.consistency),
        ):
            raise ReceiptRefused(
                f"the checkpoint of size {size} is not consistent with the one of size "
                f"{old.tree_size} this node saw before: the hub rewrote its log"
            )


# ------------------------------------------------------------------ the auditor's full check


@dataclass
class Verification:
    ok: bool
    entries: int
    checkpoints: int
    receipts: int
    first_bad: int | None
    message: str
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "receipts": self.receipts,
            "first_bad": self.first_bad,
            "message": self.message,
            "problems": self.problems,
        }


def verify_log(
    entries: Sequence[AuditEntry],
    checkpoints: Iterable[SignedCheckpoint],
    hub_public_key: str,
    receipts: Mapping[str, Sequence[dict[str, Any]]] | None = None,
) -> Verification:
    """Recompute chain and tree; check every checkpoint's signature, root and consistency; check
    each node's receipts against the entries. Reports the first bad entry (lowest seq)."""
    #: faults that name their exact entry (chain, receipts), and those that only bound where the
    #: first bad entry lies (checkpoints); exact ones are reported first
    exact: list[tuple[int, str]] = []
    bounded: list[tuple[int, str]] = []
    n = len(entries)
    # 1. the chain: order, links and content
    prev = GENESIS_HASH
    for i, e in enumerate(entries, start=1):
        if e.seq != i:
            exact.append((i, f"entry {i} is missing or out of order (found seq {e.seq} there)"))
            break
        if e.prev_hash != prev:
            exact.append((i, f"entry {i} does not follow its predecessor (reordered/removed)"))
            break
        if chain_hash(e.prev_hash, e.seq, e.ts, e.event, e.actor, e.data) != e.hash:
            exact.append((i, f"entry {i} was altered (hash mismatch)"))
            break
        prev = e.hash
    leaves = [entry_leaf(e) for e in entries]
    tree = merkle.Tree(leaves)
    # 2. the hub's checkpoints: signature, size, root, consistency between successive ones
    cps = sorted(checkpoints, key=lambda c: c.checkpoint.tree_size)
    last_good: SignedCheckpoint | None = None
    for cp in cps:
        size = cp.checkpoint.tree_size
        if not checkpoint_signed(cp, hub_public_key):
            bounded.append((min(size, n + 1), f"checkpoint of size {size}: bad hub signature"))
            continue
        if size > n:
            bounded.append(
                (n + 1, f"log truncated: checkpoint covers {size} entries, the log has {n}")
            )
            continue
        if tree.root(size).hex() != cp.checkpoint.root_hash:
            start = last_good.checkpoint.tree_size + 1 if last_good else 1
            bounded.append(
                (start, f"entries {start}..{size} do not match the signed checkpoint of {size}")
            )
            continue
        if last_good is not None:
            m = last_good.checkpoint.tree_size
            if not merkle.verify_consistency(
                m,
                size,
                bytes.fromhex(last_good.checkpoint.root_hash),
                tree.root(size),
                tree.consistency(m, size),
            ):
                bounded.append((m + 1, f"checkpoint {size} is not consistent with {m}"))
        last_good = cp
    # 3. the nodes' receipts: each names an entry and a checkpoint the hub signed
    count = 0
    for agency, items in (receipts or {}).items():
        for r in items:
            count += 1
            seq, leaf = int(r["seq"]), str(r["leaf_hash"])
            cp = SignedCheckpoint.model_validate(r["checkpoint"])
            if not checkpoint_signed(cp, hub_public_key):
                exact.append((seq, f"node {agency}'s receipt for entry {seq}: bad signature"))
                continue
            if seq > n:
                exact.append((seq, f"entry {seq} (receipted by node {agency}) was deleted"))
                continue
            if leaves[seq - 1].hex() != leaf:
                exact.append((seq, f"entry {seq} differs from node {agency}'s receipt"))
            size = cp.checkpoint.tree_size
            if size <= n and tree.root(size).hex() != cp.checkpoint.root_hash:
                bounded.append(
                    (
                        min(seq, size),
                        f"the log's first {size} entries differ from the checkpoint node "
                        f"{agency} holds: history was rewritten",
                    )
                )
    checked = len(cps)
    problems = sorted(exact) + sorted(bounded)
    if not problems:
        return Verification(
            True,
            n,
            checked,
            count,
            None,
            f"{n} entries, {checked} checkpoints and {count} node receipts verified",
        )
    first, message = min(exact or bounded, key=lambda p: p[0])
    return Verification(False, n, checked, count, first, message, [m for _, m in problems])
