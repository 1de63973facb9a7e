"""GB 11643 check digits: the known example, vectorised construction, and typo detection."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from datalab.gb11643 import check_char, is_valid_id, valid_ids, valid_matrix
from synthetic_city.ids import build_id_matrix, matrix_to_strings, typo


def test_known_examples() -> None:
    assert check_char("11010519491231002") == "X"
    assert is_valid_id("11010519491231002X")
    assert not is_valid_id("11010519491231002x")  # normalise first
    assert not is_valid_id("110105194912310021")
    assert not is_valid_id(None)
    assert not is_valid_id("1101051949123100")


def test_matrix_matches_scalar_and_has_x() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    region = rng.choice([440106, 430102, 512021], size=n)
    birth = rng.choice([19491231, 19900101, 20010228], size=n)
    seq = rng.integers(1, 999, size=n)
    strings = matrix_to_strings(build_id_matrix(region, birth, seq)).to_pylist()
    assert all(check_char(s[:17]) == s[17] for s in strings)
    assert any(s.endswith("X") for s in strings)
    assert valid_ids(pa.array(strings)).all()


def test_every_single_digit_typo_is_detected() -> None:
    rng = np.random.default_rng(1)
    mat = build_id_matrix(
        np.full(2000, 440111), np.full(2000, 19800101), rng.integers(1, 999, size=2000)
    )
    bad = typo(mat, rng)
    assert valid_matrix(mat).all()
    assert not valid_matrix(bad).any()
    assert ((bad != mat).sum(axis=1) == 1).all()
