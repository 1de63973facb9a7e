"""Tampering with the hub's audit log in its database, while the lab runs: every edit, deletion,
reordering, truncation, and a whole history rewritten and re-signed by a hub that holds its own
key, is reported by ``datalab audit verify`` with the offending entry.

Each test snapshots the log tables and restores them afterwards, so the cases stay independent.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator

import pytest

from datalab.client import Lab
from datalab.log_proofs import chain_hash, entry_leaf, sign_checkpoint
from datalab.merkle import root
from datalab.signing import SigningKey
from datalab.wire import AuditEntry, Checkpoint
from datalab_cli.local_lab import ANALYST, AUDITOR, LocalLab
from datalab_cli.main import main
from node_agent.log import read_entries
from node_agent.settings import LOG_FILE

AGENCY = "health"
TABLES = ("audit_log", "audit_checkpoints")


def _db(lab: LocalLab) -> sqlite3.Connection:
    return sqlite3.connect(lab.hub_state() / "hub.db", timeout=10, isolation_level=None)


@pytest.fixture(scope="module")
def audited(governed_lab: LocalLab) -> LocalLab:
    """The governed lab after two released jobs: entries, checkpoints and node receipts exist."""
    governed_lab.approve_all(AGENCY)  # health's admin approves locally (signed) for these runs
    with Lab(governed_lab.url, governed_lab.tokens[ANALYST]) as analyst:
        for level in ("district", "street"):
            analyst.run("key_groups", group="chronic_illness", level=level)
    return governed_lab


@pytest.fixture
def hub_db(audited: LocalLab) -> Iterator[sqlite3.Connection]:
    db = _db(audited)
    saved = {t: db.execute(f"SELECT * FROM {t}").fetchall() for t in TABLES}
    try:
        yield db
    finally:
        db.execute("BEGIN IMMEDIATE")
        for table, rows in saved.items():
            db.execute(f"DELETE FROM {table}")
            if rows:
                marks = ",".join("?" * len(rows[0]))
                db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        db.execute("COMMIT")
        db.close()


def _verify(lab: LocalLab, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(
        [
            "audit",
            "verify",
            "--hub",
            lab.url,
            # "=": a token may begin with "-", which argparse would take for an option
            f"--token={lab.tokens[AUDITOR]}",
            "--node-state",
            str(lab.node_state(AGENCY)),
        ]
    )
    return code, capsys.readouterr().out


def _first_bad(out: str) -> int:
    match = re.search(r"first bad entry (\d+)", out)
    assert match, out
    return int(match.group(1))


def _receipted_seq(lab: LocalLab) -> int:
    receipts = [
        e["data"]
        for e in read_entries(lab.node_state(AGENCY) / LOG_FILE)
        if e["event"] == "audit_receipt"
    ]
    assert receipts, "the node kept no audit receipts"
    return int(receipts[0]["seq"])


def _seq_of(db: sqlite3.Connection, event: str) -> int:
    return db.execute("SELECT min(seq) FROM audit_log WHERE event = ?", (event,)).fetchone()[0]


def test_the_untouched_log_verifies_with_node_receipts(audited: LocalLab, capsys) -> None:
    code, out = _verify(audited, capsys)
    assert code == 0, out
    assert "ok:" in out and re.search(r"[1-9]\d* node receipts", out)
    with Lab(audited.url, audited.tokens[AUDITOR]) as auditor:
        report = auditor.verify_audit()
    assert report["ok"] is True and report["checkpoints"] >= 1


def test_an_edited_entry_is_reported(audited: LocalLab, hub_db, capsys) -> None:
    seq = _seq_of(hub_db, "job_requested")
    data = hub_db.execute("SELECT data FROM audit_log WHERE seq = ?", (seq,)).fetchone()[0]
    hub_db.execute(
        "UPDATE audit_log SET data = ? WHERE seq = ?",
        (data.replace('"chronic_illness"', '"pregnancy"'), seq),
    )
    code, out = _verify(audited, capsys)
    assert code == 1 and _first_bad(out) == seq and "altered" in out


def test_a_deleted_entry_is_reported(audited: LocalLab, hub_db, capsys) -> None:
    seq = _seq_of(hub_db, "result_released")
    hub_db.execute("DELETE FROM audit_log WHERE seq = ?", (seq,))
    code, out = _verify(audited, capsys)
    assert code == 1 and _first_bad(out) == seq


def test_reordered_entries_are_reported(audited: LocalLab, hub_db, capsys) -> None:
    a = _seq_of(hub_db, "task_issued")
    cols = "ts, event, actor, data, prev_hash, hash"
    row_a = hub_db.execute(f"SELECT {cols} FROM audit_log WHERE seq = ?", (a,)).fetchone()
    row_b = hub_db.execute(f"SELECT {cols} FROM audit_log WHERE seq = ?", (a + 1,)).fetchone()
    sets = "ts=?, event=?, actor=?, data=?, prev_hash=?, hash=?"
    hub_db.execute(f"UPDATE audit_log SET {sets} WHERE seq = ?", (*row_b, a))
    hub_db.execute(f"UPDATE audit_log SET {sets} WHERE seq = ?", (*row_a, a + 1))
    code, out = _verify(audited, capsys)
    assert code == 1 and _first_bad(out) == a


def test_a_truncated_log_is_reported_even_with_its_checkpoints_dropped(
    audited: LocalLab, hub_db, capsys
) -> None:
    receipted = _receipted_seq(audited)
    hub_db.execute("DELETE FROM audit_log WHERE seq >= ?", (receipted,))
    code, out = _verify(audited, capsys)
    assert code == 1 and "truncated" in out
    # the hub also drops the checkpoints that gave it away: the node's receipt still does
    hub_db.execute("DELETE FROM audit_checkpoints WHERE tree_size >= ?", (receipted,))
    code, out = _verify(audited, capsys)
    assert code == 1 and _first_bad(out) == receipted and "deleted" in out


def test_a_history_rewritten_and_re_signed_is_caught_by_the_nodes_checkpoints(
    audited: LocalLab, hub_db, capsys
) -> None:
    """The worst case: the hub edits an entry, recomputes every hash after it, and re-signs
    all its checkpoints with its own key. Only what the nodes hold can tell — and it does."""
    seq = _seq_of(hub_db, "job_requested")
    rows = hub_db.execute(
        "SELECT seq, ts, event, actor, data FROM audit_log ORDER BY seq"
    ).fetchall()
    prev, entries = "0" * 64, []
    hub_db.execute("BEGIN IMMEDIATE")
    for s, ts, event, actor, data in rows:
        if s == seq:
            data = data.replace('"chronic_illness"', '"pregnancy"')
        parsed = json.loads(data)
        h = chain_hash(prev, s, ts, event, actor, parsed)
        hub_db.execute(
            "UPDATE audit_log SET data = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (data, prev, h, s),
        )
        entries.append(
            AuditEntry(seq=s, ts=ts, event=event, actor=actor, data=parsed, prev_hash=prev, hash=h)
        )
        prev = h
    hub_key = SigningKey.from_pem((audited.hub_state() / "hub_key.pem").read_text())
    leaves = [entry_leaf(e) for e in entries]
    for size, issued_at in hub_db.execute(
        "SELECT tree_size, issued_at FROM audit_checkpoints"
    ).fetchall():
        cp = sign_checkpoint(
            hub_key,
            Checkpoint(tree_size=size, root_hash=root(leaves[:size]).hex(), issued_at=issued_at),
        )
        hub_db.execute(
            "UPDATE audit_checkpoints SET root_hash = ?, signature = ? WHERE tree_size = ?",
            (cp.checkpoint.root_hash, cp.signature, size),
        )
    hub_db.execute("COMMIT")
    code, out = _verify(audited, capsys)
    assert code == 1 and "rewritten" in out and f"node {AGENCY}" in out
    assert _first_bad(out) <= _receipted_seq(audited)


def test_the_node_checks_every_receipt_it_keeps(audited: LocalLab) -> None:
    log = list(read_entries(audited.node_state(AGENCY) / LOG_FILE))
    assert not [e for e in log if e["event"] == "audit_proof_failed"]
    receipts = [e["data"] for e in log if e["event"] == "audit_receipt"]
    sizes = [r["checkpoint"]["checkpoint"]["tree_size"] for r in receipts]
    assert sizes == sorted(sizes) and len(receipts) >= 2
