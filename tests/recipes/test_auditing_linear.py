"""Query auditing's linear program (``check_linear``): a small withheld cell that no single
subtraction reveals, but that three released tables pin together, is caught; the same tables
without the one that completes the system are released.

One area, people by age band (a, b) and migrant status: (a, migrant) = 3 is the small cell.
"""

from __future__ import annotations

import pytest

from datalab.errors import JobRefused
from datalab.wire import Table
from recipes.auditing import AuditedQuery, NodeAtoms, check_differencing, check_linear
from recipes.contract import GroupKey

BAND, MIGRANT = GroupKey(column="band"), GroupKey(column="migrant")
# p0: everyone, by band; p1: everyone, by status; p2: migrants, by band; p3: others, by band
ATOMS = Table(
    columns=["p0", "p1", "p2", "p3", "k:band:", "k:migrant:", "n"],
    rows=[
        [True, True, True, False, "a", True, 3],
        [True, True, False, True, "a", False, 40],
        [True, True, True, False, "b", True, 30],
        [True, True, False, True, "b", False, 50],
    ],
)
QUERIES = [
    AuditedQuery("by_band", [BAND], [["a"], ["b"]]),  # 43, 80
    AuditedQuery("by_status", [MIGRANT], [[True], [False]]),  # 33, 90
    AuditedQuery("migrants_by_band", [BAND], []),  # 3 and 30: both withheld
    AuditedQuery("others_by_band", [BAND], [["b"]]),  # 50 released, 40 withheld
]


def _atoms(queries: list[AuditedQuery]) -> list[NodeAtoms]:
    ids = ["by_band", "by_status", "migrants_by_band", "others_by_band"]
    keep = [ids.index(q.query_id) for q in queries]
    columns = [f"p{j}" for j in range(len(keep))] + ["k:band:", "k:migrant:", "n"]
    rows = [[row[i] for i in keep] + row[4:] for row in ATOMS.rows]
    return [NodeAtoms(Table(columns=columns, rows=rows), [q.query_id for q in queries])]


def test_three_tables_pinning_a_small_withheld_cell_are_refused() -> None:
    # (a, migrant) = by_status[migrant] − (by_band[b] − others_by_band[b]) = 33 − 30 = 3:
    # no single released cell minus another inside it shows that
    check_differencing(QUERIES, _atoms(QUERIES), min_difference=10)
    with pytest.raises(JobRefused, match="linear reasoning across tables"):
        check_linear(QUERIES, _atoms(QUERIES), min_cell=10)


def test_without_the_completing_table_the_small_cell_keeps_a_wide_interval() -> None:
    queries = QUERIES[:3]  # (a, migrant) can be anything in [0, 33]
    check_linear(queries, _atoms(queries), min_cell=10)


def test_nothing_to_check_when_off_or_alone() -> None:
    check_linear(QUERIES, _atoms(QUERIES), min_cell=0)
    check_linear(QUERIES[2:3], _atoms(QUERIES[2:3]), min_cell=10)
