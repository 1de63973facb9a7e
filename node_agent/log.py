"""The node's own append-only log: what it received, refused, computed and registered.

Each line is one JSON entry chained to the previous by sha256 over canonical JSON, and signed by
the node's key, so the agency (and an auditor it shows the file to) can detect an edited, removed
or reordered entry and cross-check the node's receipts against the hub's audit log. The log holds
ids, recipe names, hashes, reasons and digests — never rows, identifiers or result tables.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datalab.canonical import canonical_bytes, digest
from datalab.signing import BadSignature, SigningKey, verify

GENESIS = "0" * 64


def entry_hash(entry: dict[str, Any]) -> str:
    """The hash of an entry: over every field except its own hash and signature."""
    body = {k: v for k, v in entry.items() if k not in ("hash", "signature")}
    return digest(body)


@dataclass(frozen=True)
class LogVerification:
    ok: bool
    entries: int
    first_bad: int | None
    message: str


class LocalLog:
    """Appends signed, chained entries to a JSON-lines file.

    More than one process may append (the running node agent, and the admin's ``datalab node``
    commands on the same machine, e.g. ``rank``): each append holds an exclusive lock on the
    file and, if the file grew since this process last wrote, reads the chain's head again, so
    the chain never forks."""

    def __init__(self, path: Path, key: SigningKey) -> None:
        self.path = Path(path)
        self._key = key
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._seq, self._head, self._size = 0, GENESIS, -1

    def _read_head(self) -> None:
        self._seq, self._head = 0, GENESIS
        for entry in read_entries(self.path):
            self._seq, self._head = entry["seq"], entry["hash"]

    def append(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Write one entry and return it (with its hash and signature)."""
        with self._lock, self.path.open("ab") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file is closed
            size = fh.seek(0, os.SEEK_END)
            if size != self._size:  # first write, or another process appended meanwhile
                self._read_head()
            entry: dict[str, Any] = {
                "seq": self._seq + 1,
                "ts": round(time.time(), 6),
                "event": event,
                "data": data,
                "prev_hash": self._head,
            }
            entry["hash"] = entry_hash(entry)
            entry["signature"] = self._key.sign(entry["hash"].encode("ascii"))
            line = canonical_bytes(entry) + b"\n"
            fh.write(line)
            fh.flush()
            self._seq, self._head, self._size = entry["seq"], entry["hash"], size + len(line)
        return entry


def read_entries(path: Path) -> Iterator[dict[str, Any]]:
    """The log's entries in order (nothing when the file does not exist)."""
    try:
        fh = path.open("r", encoding="utf-8")
    except FileNotFoundError:
        return
    with fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def verify_log(path: Path, public_key: str) -> LogVerification:
    """Check every entry's sequence, chain link, hash and signature."""
    prev, count = GENESIS, 0
    try:
        for count, entry in enumerate(read_entries(path), start=1):
            seq = entry.get("seq")
            if seq != count:
                return LogVerification(False, count, count, f"entry {count}: sequence is {seq}")
            if entry.get("prev_hash") != prev:
                return LogVerification(False, count, seq, f"entry {seq}: chain broken")
            if entry_hash(entry) != entry.get("hash"):
                return LogVerification(False, count, seq, f"entry {seq}: content was altered")
            try:
                verify(public_key, entry["hash"].encode("ascii"), str(entry.get("signature")))
            except BadSignature:
                return LogVerification(False, count, seq, f"entry {seq}: bad signature")
            prev = entry["hash"]
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
        return LogVerification(False, count, count, f"entry {count}: not a log entry")
    return LogVerification(True, count, None, f"{count} entries, chain and signatures intact")
