"""Making resident identity numbers in the GB 11643-1999 format, vectorised (the checksum rule
itself is ``datalab/gb11643.py``).

An ID is 18 characters: a 6-digit region code, the 8-digit birth date, a 3-digit sequence whose
parity gives the sex (odd male, even female) and an ISO 7064 MOD 11-2 check character (0-9 or X).
The generator builds IDs as a ``uint8`` matrix of ASCII codes (one row per person), so that
checksums, typos and the lower-case ``x`` some agencies write are array operations, and only
turns them into strings when writing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from datalab.gb11643 import CHECK_CODES, WEIGHTS, ZERO_CODE


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
    out[:, :17] = digits + ZERO_CODE
    out[:, 17] = CHECK_CODES[(digits @ WEIGHTS) % 11]
    return out


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
    old = out[rows, pos].astype(np.int64) - ZERO_CODE
    out[rows, pos] = ((old + rng.integers(1, 10, size=n)) % 10 + ZERO_CODE).astype(np.uint8)
    return out
