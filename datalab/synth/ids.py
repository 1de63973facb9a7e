"""Resident identity numbers in the GB 11643-1999 format, vectorised.

An ID is 18 characters: a 6-digit region code, the 8-digit birth date, a 3-digit sequence whose
parity gives the sex (odd male, even female) and an ISO 7064 MOD 11-2 check character (0-9 or X).
The generator builds IDs as a ``uint8`` matrix of ASCII codes (one row per person), so that
checksums, typos and the lower-case ``x`` some agencies write are array operations, and only
turns them into strings when writing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: ISO 7064 MOD 11-2 weights for the 17 body digits (2^(17-i) mod 11).
WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
#: Check character for each value of (sum of weighted digits) mod 11.
CHECK_CHARS = "10X98765432"
_CHECK_CODES = np.frombuffer(CHECK_CHARS.encode("ascii"), dtype=np.uint8)
_ZERO = ord("0")


def check_char(body17: str) -> str:
    """The check character of a 17-digit body."""
    if len(body17) != 17 or not body17.isdigit():
        raise ValueError("an ID body is 17 digits")
    total = sum(int(c) * int(w) for c, w in zip(body17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def is_valid_id(value: str | None) -> bool:
    """True for an 18-character ID with digits, upper-case check X allowed, and a valid checksum.

    Lower-case ``x`` is refused on purpose: normalise first (``value.upper()``), as the matching
    recipes do, so that a node can count how dirty its data is.
    """
    if value is None or len(value) != 18 or not value[:17].isdigit():
        return False
    return check_char(value[:17]) == value[17]


def build_id_matrix(region: np.ndarray, birth_yyyymmdd: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """ASCII matrix (n, 18) of IDs from region codes, birth dates (int yyyymmdd), sequences."""
    body = (
        region.astype(np.int64) * 10**11
        + birth_yyyymmdd.astype(np.int64) * 1000
        + seq.astype(np.int64)
    )
    powers = 10 ** np.arange(16, -1, -1, dtype=np.int64)
    digits = (body[:, None] // powers[None, :]) % 10
    out = np.empty((len(body), 18), dtype=np.uint8)
    out[:, :17] = digits + _ZERO
    out[:, 17] = _CHECK_CODES[(digits @ WEIGHTS) % 11]
    return out


def valid_matrix(mat: np.ndarray) -> np.ndarray:
    """Row-wise checksum validity of an ASCII ID matrix (upper-case X only)."""
    digits = mat[:, :17].astype(np.int64) - _ZERO
    ok = ((digits >= 0) & (digits <= 9)).all(axis=1)
    expected = _CHECK_CODES[(np.clip(digits, 0, 9) @ WEIGHTS) % 11]
    return ok & (expected == mat[:, 17])


def valid_ids(values: pa.Array | pa.ChunkedArray | list[str | None]) -> np.ndarray:
    """Checksum validity of a column of IDs; nulls and wrong lengths are invalid."""
    arr = pa.chunked_array([values]) if isinstance(values, list) else values
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.string())
    py = arr.to_numpy(zero_copy_only=False)
    result = np.zeros(len(py), dtype=bool)
    good_len = np.array([isinstance(v, str) and len(v) == 18 for v in py], dtype=bool)
    if good_len.any():
        raw = "".join(py[good_len]).encode("ascii", errors="replace")
        mat = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
        result[good_len] = valid_matrix(mat)
    return result


def matrix_to_strings(mat: np.ndarray) -> pa.StringArray:
    """Turn an ASCII matrix (one fixed-width string per row) into an Arrow string array."""
    n, width = mat.shape
    offsets = pa.array(np.arange(0, width * (n + 1), width, dtype=np.int32))
    return pa.StringArray.from_buffers(
        n, offsets.buffers()[1], pa.py_buffer(np.ascontiguousarray(mat).tobytes())
    )


def lower_x(mat: np.ndarray) -> np.ndarray:
    """Copy of ``mat`` with an upper-case X check character written as lower-case x."""
    out = mat.copy()
    out[:, 17] = np.where(out[:, 17] == ord("X"), ord("x"), out[:, 17])
    return out


def typo(mat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copy of ``mat`` with one of the 17 body digits per row replaced by a different digit.

    The check character is left as it was, so the checksum fails unless the change happens to
    preserve the weighted sum mod 11, which no single-digit change can (all weights are nonzero
    mod 11): every typo is detectable.
    """
    out = mat.copy()
    n = len(out)
    pos = rng.integers(0, 17, size=n)
    rows = np.arange(n)
    old = out[rows, pos].astype(np.int64) - _ZERO
    out[rows, pos] = ((old + rng.integers(1, 10, size=n)) % 10 + _ZERO).astype(np.uint8)
    return out
