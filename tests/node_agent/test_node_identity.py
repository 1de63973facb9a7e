"""Identifier normalisation and the cascade: every agency's format gives the same key."""

from __future__ import annotations

import pyarrow as pa

from datalab.gb11643 import check_char
from node_agent.identity import (
    IdentityColumns,
    client_elements,
    normalise_birth,
    normalise_ids,
    normalise_sex,
    server_elements,
)

BODY = "44010319900101123"
GOOD = BODY + check_char(BODY)
X_BODY = next(b for b in (f"4401031990010{i:04d}" for i in range(1000)) if check_char(b) == "X")
X_ID = X_BODY + "X"
COLS = IdentityColumns(id="id", name="name", birth="birth", sex="sex")


def test_ids_are_upper_cased_trimmed_and_checksum_validated() -> None:
    typo = ("5" if BODY[3] != "5" else "6").join([BODY[:3], BODY[4:]]) + GOOD[-1]
    ids, valid = normalise_ids(pa.array([GOOD, X_ID.lower(), f" {X_ID} ", typo, None, "123"]))
    assert ids[:3] == [GOOD, X_ID, X_ID]
    assert valid == [True, True, True, False, False, False]


def test_every_agency_format_of_birth_and_sex_normalises_alike() -> None:
    assert {normalise_birth(v) for v in ("1990-01-01", "1990/01/01", "19900101")} == {"1990-01-01"}
    assert normalise_birth("1990-1-1") is None  # unreadable, not guessed
    assert [normalise_sex(v) for v in ("M", "男", "1", "f", "女", "2", "?")] == [
        "M",
        "M",
        "M",
        "F",
        "F",
        "F",
        None,
    ]


def _table(rows: list[tuple]) -> pa.Table:
    names = ["id", "name", "birth", "sex", "grid"]
    return pa.table({n: pa.array([r[i] for r in rows], pa.string()) for i, n in enumerate(names)})


def test_cascade_uses_name_birth_sex_only_where_the_id_fails_and_never_double_counts() -> None:
    grid = "440103001001001"
    table = _table(
        [
            (GOOD.lower(), "张 伟", "1990-01-01", "M", grid),  # valid ID
            (None, "张伟", "19900101", "男", grid),  # same person, ID missing: covered
            (GOOD[:-1] + ("0" if GOOD[-1] != "0" else "1"), "李娜", "1991/02/03", "2", grid),
            (None, None, None, None, grid),  # no usable key
        ]
    )
    elements, counts = client_elements(table, COLS, "grid", "grid", cascade=True)
    assert elements[0] == f"id:{GOOD}@{grid}"
    assert elements[1] is None  # the same person already counts under the valid ID
    assert elements[2] == f"nbs:李娜|1991-02-03|F@{grid}"
    assert elements[3] is None
    assert (counts.valid_id, counts.invalid_id, counts.missing_id) == (1, 1, 2)
    assert (counts.by_name_birth_sex, counts.no_key) == (1, 1)
    id_only, counts = client_elements(table, COLS, "grid", "grid", cascade=False)
    assert id_only == [f"id:{GOOD}@{grid}", None, None, None]
    assert counts.no_key == 3


def test_the_server_inserts_both_keys_rolled_up_to_the_match_level() -> None:
    table = _table([(GOOD, "张伟", "1990-01-01", "M", "440103001001001")])
    items, _ = server_elements(table, COLS, "grid", "street")
    assert items == [f"id:{GOOD}@440103001", "nbs:张伟|1990-01-01|M@440103001"]
