"""Replay protection: a task is run at most once, and never after it expires.

A signed task is valid forever as far as its signature goes, so anyone who captured one (or a
hub replaying its own) could make the node compute it again — e.g. after the data changed, to
difference two answers. The node therefore remembers every nonce and task id it accepted, in a
SQLite file in its state folder that survives restarts, until the task has expired (after which
the expiry check refuses it anyway).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from datalab.errors import TaskRefused
from datalab.signing import MAX_CLOCK_SKEW_S
from datalab.wire import Task

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    nonce TEXT PRIMARY KEY,
    task_id TEXT NOT NULL UNIQUE,
    expires_at REAL NOT NULL,
    seen_at REAL NOT NULL
)
"""


def check_fresh(task: Task, now: float | None = None) -> None:
    """Refuse an expired task, or one issued further in the future than clock skew explains."""
    now = time.time() if now is None else now
    if now > task.expires_at:
        raise TaskRefused(f"task {task.task_id} expired {now - task.expires_at:.0f} s ago")
    if task.issued_at > now + MAX_CLOCK_SKEW_S:
        raise TaskRefused(f"task {task.task_id} is issued in the future: check the clocks")
    if task.expires_at < task.issued_at:
        raise TaskRefused(f"task {task.task_id} expires before it was issued")


class NonceStore:
    """The nonces and task ids this node has accepted."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is durable across a process crash without an fsync per task
        # (an fsync costs milliseconds, more than running a small task)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()

    def claim(self, task: Task, now: float | None = None) -> None:
        """Record ``task`` as accepted; TaskRefused if its nonce or id was seen before."""
        now = time.time() if now is None else now
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO seen (nonce, task_id, expires_at, seen_at) VALUES (?, ?, ?, ?)",
                    (task.nonce, task.task_id, task.expires_at, now),
                )
            except sqlite3.IntegrityError:
                raise TaskRefused(
                    f"task {task.task_id} replayed: its nonce or id was already used"
                ) from None

    def purge(self, now: float | None = None) -> int:
        """Forget tasks that expired long enough ago to be refused by the expiry check."""
        now = time.time() if now is None else now
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM seen WHERE expires_at < ?", (now - 2 * MAX_CLOCK_SKEW_S,)
            )
        return cur.rowcount

    def close(self) -> None:
        self._db.close()
