"""The disclosure rules applied to one combined table: settings, strictest-wins, query-set and
complement sizes, dominance ((n,k) and p%), rounding after suppression."""

from __future__ import annotations

import pytest

from datalab.errors import InvalidParameters, JobRefused
from datalab.wire import Table
from recipes.contract import Combined, DisclosurePolicy
from recipes.release import QuerySet, apply_rules, dominated
from recipes.rules import SETTINGS, check_value, defaults, effective


def _table(rows: list[list[object]], contributions: list[tuple[float, float, float]] | None = None):
    return Combined(
        table=Table(columns=["area", "n", "sum"], rows=rows),
        key_columns=["area"],
        count_column="n",
        contributions=contributions,
    )


def test_every_setting_has_a_default_a_description_and_a_valid_default() -> None:
    for s in SETTINGS:
        assert s.description
        assert check_value(s.name, s.default) == s.default
    assert defaults()["min_cell"] == 10


def test_bad_setting_values_are_refused_with_the_reason() -> None:
    with pytest.raises(InvalidParameters, match="unknown disclosure setting"):
        check_value("min_cel", 5)
    with pytest.raises(InvalidParameters, match="between 1 and"):
        check_value("min_cell", 0)
    with pytest.raises(InvalidParameters, match="must be a number"):
        check_value("p_percent", float("nan"))
    with pytest.raises(InvalidParameters, match="integer"):
        check_value("rounding_base", 2.5)


def test_agencies_and_nodes_can_only_tighten_the_recipe_policy() -> None:
    policy = DisclosurePolicy(min_cell=5, complementary=False, dominance_k=90.0)
    rules = effective(policy, [{"min_cell": 3}, {"min_cell": 12, "dominance_k": 95.0}])
    assert rules.min_cell == 12  # the largest minimum
    assert rules["dominance_k"] == 90.0  # the smaller share is stricter
    assert rules["complementary"] is False  # nobody asked for it
    assert effective(policy, [{"complementary": True}])["complementary"] is True
    assert effective(policy).min_cell == 5  # the recipe's reviewed policy is the floor


def test_query_set_and_complement_sizes_are_refused_without_saying_the_size() -> None:
    rules = effective(DisclosurePolicy(min_query_set=10, min_complement=10))
    table = _table([["a", 20, 1.0]])
    with pytest.raises(JobRefused, match="query set too small") as small:
        apply_rules(table, rules, QuerySet(size=7, population=1000))
    assert "7" not in small.value.message
    with pytest.raises(JobRefused, match="complement too small") as comp:
        apply_rules(table, rules, QuerySet(size=997, population=1000))
    assert "3" not in comp.value.message
    # the whole dataset (complement 0) and a large complement are fine
    apply_rules(table, rules, QuerySet(size=1000, population=1000))
    apply_rules(table, rules, QuerySet(size=500, population=1000))
    # a node that did not say: the table's total count is the query set
    with pytest.raises(JobRefused):
        apply_rules(_table([["a", 4, 1.0]]), rules, QuerySet(size=None, population=1000))


def test_nk_and_p_percent_dominance() -> None:
    rules = effective(DisclosurePolicy(dominance_n=2, dominance_k=85.0, p_percent=10.0))
    table = _table(
        [["a", 20, 0.0], ["b", 20, 0.0], ["c", 20, 0.0], ["d", 20, 0.0]],
        contributions=[
            (1000.0, 300.0, 200.0),  # top two 50%, rest 500 ≥ 10% of 300: safe
            (1000.0, 900.0, 10.0),  # top two 91% > 85%: (n,k) breaks
            (1000.0, 500.0, 460.0),  # top two 96%: (n,k) breaks
            (1000.0, 480.0, 450.0),  # 93%: (n,k); p%: 70 ≥ 48, so only (n,k)
        ],
    )
    assert dominated(table, rules) == [False, True, True, True]
    only_p = effective(DisclosurePolicy(dominance_n=0, p_percent=10.0))
    one = _table(
        [["a", 20, 0.0], ["b", 20, 0.0]], contributions=[(100.0, 60.0, 35.0), (100.0, 50.0, 10.0)]
    )
    # a: 100 - 95 = 5 < 10% of 60 → the runner-up learns the largest within 10%
    assert dominated(one, only_p) == [True, False]
    off = effective(DisclosurePolicy(dominance_n=0, p_percent=0.0))
    assert dominated(one, off) == [False, False]


def test_a_dominated_cell_is_withheld_with_a_complement() -> None:
    rules = effective(DisclosurePolicy(min_cell=10, dominance_n=1, dominance_k=60.0))
    table = _table(
        [["a", 20, 500.0], ["b", 30, 300.0], ["c", 40, 400.0]],
        contributions=[(500.0, 400.0, 20.0), (300.0, 20.0, 20.0), (400.0, 30.0, 20.0)],
    )
    out = apply_rules(table, rules)
    withheld = [row[0] for row in out.table.rows if row[1] is None]
    assert "a" in withheld and len(withheld) == 2  # else a = total − b − c
    assert out.notes[0].startswith("dominance: 1 sum cell")
    assert all(row[2] is None for row in out.table.rows if row[1] is None)


def test_rounding_comes_after_suppression_on_exact_counts() -> None:
    rules = effective(DisclosurePolicy(min_cell=10, rounding_base=5, complementary=False))
    out = apply_rules(
        _table([["a", 8, 1.0], ["b", 12, 1.0], ["c", 13, 1.0], ["d", 10, 1.0]]), rules
    )
    assert [row[1] for row in out.table.rows] == [None, 10, 15, 10]
    assert any("rounding" in n for n in out.notes)
