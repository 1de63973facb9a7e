"""Canonical JSON: one byte string per value, so hashes and signatures agree everywhere.

Keys sorted, no insignificant whitespace, UTF-8, and floats that are not finite refused (JSON
has no NaN; letting one through would make two parties hash different bytes).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_bytes(value: Any) -> bytes:
    """Serialise ``value`` (JSON-compatible) to its canonical bytes."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """sha256 (hex) of the canonical bytes of ``value``."""
    return sha256_hex(canonical_bytes(value))
