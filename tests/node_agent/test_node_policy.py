"""The column policy refuses every use of a column its class forbids, with a public reason, and
lets the legitimate uses through."""

from __future__ import annotations

import pytest

from datalab.errors import TaskRefused
from node_agent.connector import DuckDBConnector
from node_agent.policy import check_plan, check_query_set
from node_agent.settings import NodeSettings
from recipes.contract import AggregatePlan, Filter, GroupKey, Measure

COUNT = Measure(fn="count", alias="n")


def plan(**kw) -> AggregatePlan:
    kw.setdefault("measures", [COUNT])
    return AggregatePlan(dataset="population", **kw)


REFUSED = {
    "identifier group-by": (plan(group_by=[GroupKey(column="id_number")]), "identifier"),
    "identifier filter": (
        plan(filters=[Filter(column="id_number", op="eq", value="x")]),
        "identifier",
    ),
    "identifier output (sum)": (
        plan(measures=[Measure(fn="sum", column="id_number", alias="s")]),
        "identifier",
    ),
    "identifier top contributions": (
        plan(measures=[Measure(fn="top2_abs", column="id_number", alias="t")]),
        "identifier",
    ),
    "rows per person by a non-identifier": (
        plan(max_rows_per_person=1, person_column="sex"),
        "identifier column",
    ),
    "clamp with one bound": (
        plan(measures=[Measure(fn="sum", column="monthly_income", alias="s", lower=0.0)]),
        "lower ≤ upper",
    ),
    "clamp with an infinite bound": (
        plan(
            measures=[
                Measure(fn="sum", column="monthly_income", alias="s", lower=0.0, upper=float("inf"))
            ]
        ),
        "finite",
    ),
    "sensitive group-by": (plan(group_by=[GroupKey(column="monthly_income")]), "sensitive"),
    "sensitive filter": (
        plan(filters=[Filter(column="monthly_income", op="gt", value=1)]),
        "sensitive",
    ),
    "non-categorical quasi-identifier": (plan(group_by=[GroupKey(column="age")]), "categorical"),
    "grid finer than finest level": (
        plan(group_by=[GroupKey(column="grid", level="community")]),
        "street level or coarser",
    ),
    "grid at its own level": (plan(group_by=[GroupKey(column="grid")]), "street level"),
    "area filter finer than finest level": (
        plan(filters=[Filter(column="grid", op="eq", value="440103001001001")]),
        "street level or coarser",
    ),
    "area range filter": (
        plan(filters=[Filter(column="grid", op="ge", value="440103")]),
        "may only be filtered",
    ),
    "area filter that is no code": (
        plan(filters=[Filter(column="grid", op="eq", value="4401x")]),
        "area codes",
    ),
    "roll-up of a non-area column": (
        plan(group_by=[GroupKey(column="sex", level="district")]),
        "no area codes",
    ),
    "unknown group key": (plan(group_by=[GroupKey(column="secret")]), "not in"),
    "unknown filter column": (
        plan(filters=[Filter(column="secret", op="eq", value=1)]),
        "not in",
    ),
    "unknown measure column": (
        plan(measures=[Measure(fn="count_distinct", column="secret", alias="d")]),
        "not in",
    ),
    "sum of text": (plan(measures=[Measure(fn="sum", column="sex", alias="s")]), "numeric"),
    "no measures": (plan(measures=[]), "no measure"),
}


@pytest.fixture
def street_settings(settings: NodeSettings) -> NodeSettings:
    return settings.model_copy(update={"finest_level": "street"})


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused(case: str, connector: DuckDBConnector, street_settings: NodeSettings):
    bad, words = REFUSED[case]
    spec = connector.spec("population")
    assert spec is not None
    with pytest.raises(TaskRefused) as info:
        check_plan(bad, spec, street_settings)
    assert words in info.value.message
    assert "44010319" not in info.value.message  # never a data value


ALLOWED = {
    "count distinct of an identifier": plan(
        measures=[COUNT, Measure(fn="count_distinct", column="id_number", alias="people")]
    ),
    "sum of a sensitive column": plan(
        measures=[COUNT, Measure(fn="sum", column="monthly_income", alias="income")]
    ),
    "grid rolled up to the finest level": plan(
        group_by=[GroupKey(column="grid", level="street", alias="street")]
    ),
    "categorical quasi-identifier": plan(group_by=[GroupKey(column="sex")]),
    "filter on a quasi-identifier": plan(filters=[Filter(column="age", op="ge", value=60)]),
    "area filter at a coarse level": plan(
        filters=[Filter(column="grid", op="in", value=["440103", "440104001"])]
    ),
    "public group key": plan(group_by=[GroupKey(column="employer_id")]),
}


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_allowed(case: str, connector: DuckDBConnector, street_settings: NodeSettings):
    spec = connector.spec("population")
    assert spec is not None
    check_plan(ALLOWED[case], spec, street_settings)


def test_grid_level_allowed_when_finest_level_is_grid(
    connector: DuckDBConnector, settings: NodeSettings
):
    spec = connector.spec("population")
    assert spec is not None
    check_plan(plan(group_by=[GroupKey(column="grid")]), spec, settings)


def test_query_set_below_minimum_is_refused_without_its_size(settings: NodeSettings):
    check_query_set(10, settings)
    with pytest.raises(TaskRefused) as info:
        check_query_set(3, settings)
    assert "fewer than 10" in info.value.message
    assert "3" not in info.value.message.replace("440103", "")
