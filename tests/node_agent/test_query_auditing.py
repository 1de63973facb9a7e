"""Query auditing on atom tables computed by a real DuckDB connector over a small population:
differencing, grouped roll-up differencing and a three-query tracker are refused; harmless
overlaps are not."""

from __future__ import annotations

import pandas as pd
import pytest

from datalab.errors import JobRefused
from node_agent.connector import DuckDBConnector
from recipes.auditing import AuditedQuery, NodeAtoms, check_differencing
from recipes.contract import AggregatePlan, Filter, GroupKey, Measure

COUNT = [Measure(fn="count", alias="n")]


def plan(filters: list[Filter] | None = None, group_by: list[GroupKey] | None = None):
    return AggregatePlan(
        dataset="population", filters=filters or [], group_by=group_by or [], measures=COUNT
    )


def released(connector: DuckDBConnector, p: AggregatePlan, min_cell: int = 10) -> list[list]:
    table, _ = connector.run(p)
    k = len(p.group_by)
    return [row[:k] for row in table.rows if row[k] >= min_cell]


def audit(connector: DuckDBConnector, plans: list[AggregatePlan]) -> None:
    """Audit plans[0] (new) against plans[1:] (earlier), as the hub does."""
    ids = [f"q{i}" for i in range(len(plans))]
    queries = [
        AuditedQuery(i, p.group_by, released(connector, p)) for i, p in zip(ids, plans, strict=True)
    ]
    atoms = NodeAtoms(table=connector.atoms(plans), query_ids=ids)
    check_differencing(queries, [atoms], min_difference=10)


def target(frame: pd.DataFrame) -> tuple[str, int, str]:
    """A person unique by (grid, age) in a grid where each sex, without them, has ≥ 10 people."""
    people = frame.dropna(subset=["grid"])
    combos = people.groupby(["grid", "age"]).size()
    for (grid, age), n in combos.items():
        if n != 1:
            continue
        here = people[people["grid"] == grid]
        sex = here[here["age"] == age]["sex"].iloc[0]
        by_sex = here["sex"].value_counts()
        if by_sex.get(sex, 0) - 1 >= 10 and by_sex.drop(sex).min() >= 10:
            return str(grid), int(age), str(sex)
    raise AssertionError("no suitable person in the test population")


def test_differencing_one_person_out_is_refused(
    connector: DuckDBConnector, frame: pd.DataFrame
) -> None:
    grid, age, _ = target(frame)
    a = plan([Filter(column="grid", op="eq", value=grid)])
    b = plan([Filter(column="grid", op="eq", value=grid), Filter(column="age", op="ne", value=age)])
    with pytest.raises(JobRefused, match="fewer than 10 people"):
        audit(connector, [b, a])
    with pytest.raises(JobRefused):
        audit(connector, [a, b])  # either order


def test_grouped_differencing_is_refused(connector: DuckDBConnector, frame: pd.DataFrame) -> None:
    _, age, _ = target(frame)
    by_grid = [GroupKey(column="grid")]
    everyone = plan(group_by=by_grid)
    without = plan([Filter(column="age", op="ne", value=age)], group_by=by_grid)
    with pytest.raises(JobRefused):
        audit(connector, [without, everyone])


def test_a_three_query_tracker_is_refused(connector: DuckDBConnector, frame: pd.DataFrame) -> None:
    grid, age, sex = target(frame)
    other = "M" if sex == "F" else "F"
    in_grid = Filter(column="grid", op="eq", value=grid)
    q1 = plan([in_grid])
    q2 = plan(
        [
            in_grid,
            Filter(column="sex", op="eq", value=sex),
            Filter(column="age", op="ne", value=age),
        ]
    )
    q3 = plan([in_grid, Filter(column="sex", op="eq", value=other)])
    audit(connector, [q2, q1])  # two of them reveal nothing small
    with pytest.raises(JobRefused):
        audit(connector, [q3, q1, q2])  # q1 − q2 − q3 = the target


def test_harmless_overlaps_pass(connector: DuckDBConnector) -> None:
    by_street = [GroupKey(column="grid", level="street", alias="street")]
    by_district = [GroupKey(column="grid", level="district", alias="district")]
    audit(connector, [plan(group_by=by_street), plan(group_by=by_district), plan()])
    women = plan([Filter(column="sex", op="eq", value="F")])
    audit(connector, [women, plan(), plan([Filter(column="sex", op="eq", value="M")])])
    audit(connector, [plan(), plan()])  # the same query twice: difference 0
