"""The answering node's minimum-change rule: no membership test by re-running with one more item.

A client that learns |S ∩ B| and then |(S ∪ {t}) ∩ B| learns whether ``t`` is in B. The server
cannot see the client's items (fresh client keys hide even repeated sets), so the client node
sends, with its request, an 8-byte digest of each item keyed with a secret only the client node
holds (``summary_key``). The server keeps those digest sets — never items, and nothing it can
test its own records against — per counterparty, and refuses a new set that differs from any
kept one by at least one and fewer than ``min_change`` items. An identical set is allowed: it
reveals nothing new.
"""

from __future__ import annotations

import hmac
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

#: how many earlier sets per counterparty are kept and compared against.
KEEP_SETS = 500
DIGEST_BYTES = 8


def summary_key(state_dir: Path) -> bytes:
    """The client node's secret for keyed digests (created once, mode 0600)."""
    path = state_dir / "psi_summary.key"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    return path.read_bytes()


def keyed_digests(key: bytes, items: Iterable[str]) -> bytes:
    """8 bytes of HMAC-SHA256(key, item) per item, concatenated in item order."""
    return b"".join(
        hmac.digest(key, item.encode("utf-8"), "sha256")[:DIGEST_BYTES] for item in items
    )


def as_set(digests: bytes) -> np.ndarray:
    """Sorted unique uint64 values of concatenated digests."""
    return np.unique(np.frombuffer(digests, dtype=np.uint64))


class MinimumChange:
    """Digest sets of earlier client sets per counterparty, in ``psi-history.sqlite``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sets (id INTEGER PRIMARY KEY, counterparty TEXT, "
            "created_at REAL, n INTEGER, digests BLOB)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS sets_cp ON sets (counterparty, n)")
        self._lock = threading.Lock()

    def check_and_record(
        self, counterparty: str, units: Sequence[np.ndarray], min_change: int
    ) -> str | None:
        """None when every unit is far enough from every kept set (and record them); else a
        public reason for refusing (the sets are then not recorded)."""
        with self._lock:
            for unit in units:
                low, high = len(unit) - min_change + 1, len(unit) + min_change - 1
                rows = self._db.execute(
                    "SELECT digests FROM sets WHERE counterparty = ? AND n BETWEEN ? AND ?",
                    (counterparty, low, high),
                ).fetchall()
                for (blob,) in rows:
                    earlier = np.frombuffer(blob, dtype=np.uint64)
                    changed = len(np.setxor1d(unit, earlier, assume_unique=True))
                    if 0 < changed < min_change:
                        return (
                            f"the client set differs from an earlier one by fewer than "
                            f"{min_change} items (minimum-change rule)"
                        )
            now = time.time()
            self._db.executemany(
                "INSERT INTO sets (counterparty, created_at, n, digests) VALUES (?, ?, ?, ?)",
                [(counterparty, now, len(u), u.astype(np.uint64).tobytes()) for u in units],
            )
            self._db.execute(
                "DELETE FROM sets WHERE counterparty = ? AND id NOT IN (SELECT id FROM sets "
                "WHERE counterparty = ? ORDER BY id DESC LIMIT ?)",
                (counterparty, counterparty, KEEP_SETS),
            )
            self._db.commit()
        return None

    def close(self) -> None:
        self._db.close()
