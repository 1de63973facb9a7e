"""Governance benchmark: what signed approvals and the Merkle audit log cost.

(a) the node's approval check per task with the agency signature verified, against the same
    check (recipe, hash, bounds) without it, measured in the same run;
(b) the hub's receipt for one answer at log size N (inclusion + consistency proofs), against
    appending one entry to the plain hash chain;
(c) ``verify_log`` over N entries (entries per second).

    python bench/governance.py            # N = 100,000 entries
    python bench/governance.py --quick    # N = 10,000 entries

The last line printed is JSON with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datalab import merkle
from datalab.log_proofs import chain_hash, entry_leaf, sign_checkpoint, verify_log
from datalab.signing import SigningKey
from datalab.wire import AuditEntry, Checkpoint, Task
from node_agent.grant_store import ApprovalStore
from recipes.contract import check_bounds


def _time(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_grant_check(repeat: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = ApprovalStore(Path(tmp), "north")
        grant = store.approve("r", "1.0.0", "ab" * 32, {"level": {"choices": ["district"]}}, "adm")
        task = Task(
            task_id="t",
            job_id="j",
            agency="north",
            dataset="d",
            recipe="r",
            version="1.0.0",
            code_sha256="ab" * 32,
            params={"level": "district"},
            issued_at=0,
            expires_at=1,
            nonce="n",
        )
        signed = _time(lambda: store.check(task), repeat)

        def unsigned() -> None:
            g = store.get("r", "1.0.0")
            assert g is not None and g.code_sha256 == task.code_sha256
            check_bounds(task.params, grant.bounds)

        return signed, _time(unsigned, repeat)


def _entries(n: int) -> list[AuditEntry]:
    prev, out = "0" * 64, []
    for seq in range(1, n + 1):
        data = {"job_id": f"{seq:032x}", "task_id": f"{seq:032x}", "partial_sha256": "cd" * 32}
        h = chain_hash(prev, seq, 1.0 * seq, "partial_received", "north", data)
        out.append(
            AuditEntry(
                seq=seq,
                ts=1.0 * seq,
                event="partial_received",
                actor="north",
                data=data,
                prev_hash=prev,
                hash=h,
            )
        )
        prev = h
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 10,000 entries")
    args = parser.parse_args()
    n = 10_000 if args.quick else 100_000
    signed_s, unsigned_s = bench_grant_check(200)
    print(
        f"approval check per task: {signed_s * 1e6:.0f} µs signed vs {unsigned_s * 1e6:.0f} µs "
        f"unsigned ({signed_s / unsigned_s:.1f}x)"
    )
    entries = _entries(n)
    leaves = [entry_leaf(e) for e in entries]
    last = entries[-1]
    chain_s = _time(
        lambda: chain_hash(last.hash, n + 1, 0.0, "partial_received", "north", last.data), 200
    )
    # the hub's steady state: a cached tree, one new entry, then its receipt's proofs and root
    tree = merkle.Tree(leaves[:-1])
    tree.root()
    extra = iter([merkle.leaf_hash(f"new {i}".encode()) for i in range(1000)])

    def receipt() -> None:
        tree.append(next(extra))
        size = len(tree)
        tree.inclusion(size - 1)
        tree.consistency(size // 2)
        tree.root()

    receipt_s = _time(receipt, 200)
    cold_s = _time(lambda: merkle.root(leaves), 3)
    print(
        f"receipt at {n} entries: {receipt_s * 1e6:.0f} µs vs {chain_s * 1e6:.0f} µs for a "
        f"chain append ({receipt_s / chain_s:.0f}x); a cold root {cold_s * 1e3:.0f} ms"
    )
    key = SigningKey.generate()
    cps = [
        sign_checkpoint(
            key, Checkpoint(tree_size=s, root_hash=merkle.root(leaves[:s]).hex(), issued_at=0.0)
        )
        for s in (n // 2, n)
    ]
    start = time.perf_counter()
    result = verify_log(entries, cps, key.public_key)
    verify_s = time.perf_counter() - start
    assert result.ok, result.message
    print(f"verify {n} entries and 2 checkpoints: {verify_s:.2f} s ({n / verify_s:,.0f}/s)")
    print(
        json.dumps(
            {
                "entries": n,
                "grant_check_us": round(signed_s * 1e6, 1),
                "grant_check_unsigned_us": round(unsigned_s * 1e6, 1),
                "grant_check_ratio": round(signed_s / unsigned_s, 2),
                "receipt_ms": round(receipt_s * 1e3, 2),
                "cold_root_ms": round(cold_s * 1e3, 1),
                "chain_append_us": round(chain_s * 1e6, 1),
                "receipt_vs_chain_ratio": round(receipt_s / chain_s, 1),
                "verify_entries_per_s": round(n / verify_s),
            }
        )
    )


if __name__ == "__main__":
    main()
