"""GB 11643-1999 resident identity numbers: the check-digit rule, vectorised.

An ID is 18 characters: a 6-digit region code, the 8-digit birth date, a 3-digit sequence whose
parity gives the sex (odd male, even female) and an ISO 7064 MOD 11-2 check character (0-9 or X).
This is the one implementation of the checksum: nodes use it to tell valid identifiers from
dirty ones before matching, and the synthetic city uses it to make valid ones.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: ISO 7064 MOD 11-2 weights for the 17 body digits (2^(17-i) mod 11).
WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
#: Check character for each value of (sum of weighted digits) mod 11.
CHECK_CHARS = "10X98765432"
CHECK_CODES = np.frombuffer(CHECK_CHARS.encode("ascii"), dtype=np.uint8)
ZERO_CODE = ord("0")


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


def valid_matrix(mat: np.ndarray) -> np.ndarray:
    """Row-wise checksum validity of an ASCII ID matrix (upper-case X only)."""
    digits = mat[:, :17].astype(np.int64) - ZERO_CODE
    ok = ((digits >= 0) & (digits <= 9)).all(axis=1)
    expected = CHECK_CODES[(np.clip(digits, 0, 9) @ WEIGHTS) % 11]
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
