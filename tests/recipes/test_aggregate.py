"""aggregate@1.0.0: parameter validation against manifest and catalogue, plans, combine."""

from __future__ import annotations

from typing import Any

import pytest

from datalab.errors import InvalidParameters, JobFailed
from datalab.wire import CatalogueDataset, Table
from recipes.aggregate import FederatedAggregate
from recipes.contract import Filter, GroupKey, Measure
from tests.recipes.conftest import population

Catalogue = list[tuple[str, CatalogueDataset]]

RECIPE = FederatedAggregate()


def invalid(params: dict[str, Any], catalogue: Catalogue = ()) -> str:  # type: ignore[assignment]
    with pytest.raises(InvalidParameters) as info:
        RECIPE.validate(params, catalogue)
    return info.value.message


# ------------------------------------------------------------------ validation


def test_defaults(catalogue: Catalogue) -> None:
    params = RECIPE.validate({"kind": "district_population"}, catalogue)
    assert params == {
        "kind": "district_population",
        "measure": "count",
        "column": None,
        "group_by": [],
        "level": "district",
        "filters": [],
    }
    # the default list is a fresh copy, not the manifest's own object
    params["group_by"].append("sex")
    assert RECIPE.validate({"kind": "district_population"})["group_by"] == []


def test_unknown_parameter() -> None:
    assert invalid({"kind": "x", "colour": "red"}).startswith("unknown parameter 'colour'")


def test_missing_kind() -> None:
    assert invalid({}) == "parameter 'kind' is required"


def test_wrong_type_and_bounds() -> None:
    assert "must be a string" in invalid({"kind": 3})
    assert "'measure' must be one of count, sum, mean" in invalid({"kind": "k", "measure": "max"})
    assert "'level' must be one of" in invalid({"kind": "k", "level": "planet"})
    msg = invalid({"kind": "k", "group_by": ["a", "b", "c", "d"]})
    assert msg == "parameter 'group_by' takes at most 3 items, got 4"
    assert "at most 5 items" in invalid({"kind": "k", "filters": [["sex", "eq", "M"]] * 6})


def test_column_needed_for_sum_and_mean_only() -> None:
    assert invalid({"kind": "k", "measure": "mean"}) == (
        "parameter 'column' is required for measure 'mean'"
    )
    assert "only used with measure 'sum' or 'mean'" in invalid({"kind": "k", "column": "age"})


def test_unknown_kind_names_the_kinds_held(catalogue: Catalogue) -> None:
    msg = invalid({"kind": "tax_returns"}, catalogue)
    assert msg.startswith("no dataset of kind 'tax_returns' in the catalogue")
    assert "district_population" in msg


def test_unknown_column_lists_valid_columns(catalogue: Catalogue) -> None:
    msg = invalid({"kind": "district_population", "group_by": ["colour"]}, catalogue)
    assert msg.startswith("unknown column 'colour' in datasets of kind 'district_population'")
    assert "valid columns: id_number, sex, age, age_band, grid" in msg


def test_identifier_never_grouped_or_filtered(catalogue: Catalogue) -> None:
    msg = invalid({"kind": "district_population", "group_by": ["id_number"]}, catalogue)
    assert msg == "column 'id_number' is an identifier: it can never be grouped by or output"
    msg = invalid({"kind": "district_population", "filters": [["id_number", "eq", "X"]]}, catalogue)
    assert msg.startswith("column 'id_number' is an identifier")


def test_sensitive_never_grouped_or_filtered(catalogue: Catalogue) -> None:
    msg = invalid({"kind": "district_population", "group_by": ["monthly_income"]}, catalogue)
    assert msg.startswith("column 'monthly_income' is sensitive")
    msg = invalid(
        {"kind": "district_population", "filters": [["monthly_income", "gt", 5000]]}, catalogue
    )
    assert "never filtered on" in msg


def test_non_categorical_quasi_identifier_not_grouped(catalogue: Catalogue) -> None:
    msg = invalid({"kind": "district_population", "group_by": ["age"]}, catalogue)
    assert "quasi-identifier that is not categorical" in msg
    assert "age_band" in msg


def test_sum_needs_a_numeric_non_identifier(catalogue: Catalogue) -> None:
    base = {"kind": "district_population", "measure": "sum"}
    assert "identifier" in invalid({**base, "column": "id_number"}, catalogue)
    assert "needs a numeric column" in invalid({**base, "column": "age_band"}, catalogue)
    ok = RECIPE.validate({**base, "column": "monthly_income"}, catalogue)
    assert ok["column"] == "monthly_income"


def test_filter_values_must_be_declared(catalogue: Catalogue) -> None:
    msg = invalid({"kind": "district_population", "filters": [["sex", "eq", "X"]]}, catalogue)
    assert msg == "filter on 'sex': 'X' is not one of its values (M, F)"
    msg = invalid(
        {"kind": "district_population", "filters": [["age_band", "in", ["0-14", "90+"]]]},
        catalogue,
    )
    assert "'90+' is not one of its values" in msg
    assert "needs true or false" in invalid(
        {"kind": "district_population", "filters": [["employed", "eq", "yes"]]}, catalogue
    )


def test_area_filters_name_area_codes(catalogue: Catalogue) -> None:
    msg = invalid({"kind": "district_population", "filters": [["grid", "gt", "440103"]]}, catalogue)
    assert "may only be filtered with" in msg
    msg = invalid({"kind": "district_population", "filters": [["grid", "eq", "44"]]}, catalogue)
    assert "must name area codes" in msg
    RECIPE.validate(
        {"kind": "district_population", "filters": [["grid", "eq", "440103"]]}, catalogue
    )


def test_area_key_rules(catalogue: Catalogue) -> None:
    params = RECIPE.validate(
        {"kind": "district_population", "group_by": ["grid", "sex"], "level": "street"}, catalogue
    )
    assert params["group_by"] == ["grid", "sex"]
    assert "twice" in invalid({"kind": "district_population", "group_by": ["sex", "sex"]})


def test_column_missing_from_one_dataset_is_refused(catalogue: Catalogue) -> None:
    odd = population("population_v0")
    odd = odd.model_copy(update={"columns": [c for c in odd.columns if c.name != "employed"]})
    msg = invalid(
        {"kind": "district_population", "group_by": ["employed"]},
        [*catalogue, ("district_440105", odd)],
    )
    assert msg.startswith("unknown column 'employed'")


# ------------------------------------------------------------------ targets and plan


def test_targets_are_every_dataset_of_the_kind(catalogue: Catalogue) -> None:
    params = RECIPE.validate({"kind": "district_population"}, catalogue)
    targets = RECIPE.targets(params, catalogue)
    assert [(t.agency, t.dataset) for t in targets] == [
        ("district_440103", "population"),
        ("district_440104", "population"),
    ]


def test_plan_count_with_area_key(catalogue: Catalogue) -> None:
    params = RECIPE.validate(
        {
            "kind": "district_population",
            "group_by": ["grid", "age_band"],
            "level": "community",
            "filters": [["sex", "eq", "F"]],
        },
        catalogue,
    )
    plan = RECIPE.plan(params, population())
    assert plan.dataset == "population"
    assert plan.group_by == [
        GroupKey(column="grid", level="community", alias="community"),
        GroupKey(column="age_band"),
    ]
    assert plan.filters == [Filter(column="sex", op="eq", value="F")]
    assert plan.measures == [Measure(fn="count", alias="n")]


def test_plan_mean_asks_for_count_and_sum(catalogue: Catalogue) -> None:
    params = RECIPE.validate(
        {"kind": "district_population", "measure": "mean", "column": "monthly_income"},
        catalogue,
    )
    plan = RECIPE.plan(params, population())
    assert plan.group_by == []
    assert plan.measures == [
        Measure(fn="count", alias="n"),
        Measure(fn="sum", column="monthly_income", alias="sum"),
        Measure(fn="top2_abs", column="monthly_income", alias="top2"),
    ]


# ------------------------------------------------------------------ combine


def test_combine_counts_outer_join() -> None:
    params = RECIPE.validate({"kind": "k", "group_by": ["grid", "sex"], "level": "street"})
    a = Table(columns=["street", "sex", "n"], rows=[["440103001", "F", 5], ["440103001", "M", 7]])
    b = Table(columns=["street", "sex", "n"], rows=[["440103001", "F", 3], ["440104002", "M", 9]])
    combined = RECIPE.combine(params, [a, b])
    assert combined.table.columns == ["street", "sex", "n"]
    assert combined.table.rows == [
        ["440103001", "F", 8],
        ["440103001", "M", 7],
        ["440104002", "M", 9],
    ]
    assert combined.key_columns == ["street", "sex"]
    assert combined.count_column == "n"
    assert combined.geo_column == "street"
    assert combined.geo_level == "street"


def test_combine_sum_and_mean_across_partials() -> None:
    mean = RECIPE.validate({"kind": "k", "measure": "mean", "column": "x", "group_by": ["sex"]})
    # partial columns may come in any order
    a = Table(
        columns=["sex", "n", "sum", "top2"],
        rows=[["F", 2, 10.0, [6.0, 4.0]], ["M", 1, 100.0, [100.0]]],
    )
    b = Table(columns=["sum", "top2", "n", "sex"], rows=[[30.0, [20.0, 5.0], 8, "F"]])
    combined = RECIPE.combine(mean, [a, b])
    assert combined.table.columns == ["sex", "n", "mean"]
    # total sum / total n: (10 + 30) / (2 + 8), not the mean of the means (5 and 3.75)
    assert combined.table.rows == [["F", 10, 4.0], ["M", 1, 100.0]]
    assert combined.geo_column is None and combined.geo_level is None
    # the two largest contributions over both nodes, for the dominance rules (never released)
    assert combined.contributions == [(40.0, 20.0, 6.0), (100.0, 100.0, 0.0)]

    total = RECIPE.validate({"kind": "k", "measure": "sum", "column": "x", "group_by": ["sex"]})
    combined = RECIPE.combine(total, [a, b])
    assert combined.table.columns == ["sex", "n", "sum"]
    assert combined.table.rows == [["F", 10, 40.0], ["M", 1, 100.0]]


def test_combine_without_keys_and_with_empty_partials() -> None:
    params = RECIPE.validate({"kind": "k"})
    parts = [
        Table(columns=["n"], rows=[[4]]),
        Table(columns=["n"], rows=[[6]]),
        Table(columns=["n"], rows=[]),
    ]
    combined = RECIPE.combine(params, parts)
    assert combined.table.rows == [[10]]
    assert combined.key_columns == []


def test_combine_refuses_malformed_partials() -> None:
    params = RECIPE.validate({"kind": "k", "group_by": ["sex"]})
    with pytest.raises(JobFailed, match="lacks the group key 'sex'"):
        RECIPE.combine(params, [Table(columns=["n"], rows=[[1]])])
    with pytest.raises(JobFailed, match="no partial"):
        RECIPE.combine(params, [])


def test_an_area_column_grouped_at_its_own_level_is_still_the_area_key() -> None:
    # grid at grid level comes back named "grid", like the column: it must still be the area
    # key, or complementary suppression would ignore the hierarchy above it
    params = RECIPE.validate({"kind": "k", "group_by": ["grid", "sex"], "level": "grid"})
    part = Table(columns=["grid", "sex", "n"], rows=[["440103001001001", "F", 12]])
    combined = RECIPE.combine(params, [part])
    assert combined.geo_column == "grid" and combined.geo_level == "grid"
    assert combined.key_columns == ["grid", "sex"]
