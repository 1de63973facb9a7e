"""``dp_aggregate``: validation (bounds, a fixed key domain), the node's bounded plan, and a
combine that releases noisy numbers over exactly the declared groups."""

from __future__ import annotations

from typing import Any

import pytest

from datalab.errors import InvalidParameters, JobFailed, TaskRefused
from datalab.wire import CatalogueDataset, Table
from recipes.dp_aggregate import DPAggregate
from recipes.rules import effective
from tests.recipes.conftest import population

RECIPE = DPAggregate()
Catalogue = list[tuple[str, CatalogueDataset]]


def invalid(params: dict[str, Any], catalogue: Catalogue) -> str:
    with pytest.raises(InvalidParameters) as err:
        RECIPE.validate(params, catalogue)
    return err.value.message


def test_validation_needs_bounds_epsilon_and_a_fixed_domain(catalogue: Catalogue) -> None:
    base = {"kind": "district_population", "epsilon": 0.5}
    assert "'epsilon' is required" in invalid({"kind": "district_population"}, catalogue)
    assert "'lower' and 'upper'" in invalid(
        {**base, "measure": "sum", "column": "monthly_income"}, catalogue
    )
    assert "≤ 'upper'" in invalid(
        {**base, "measure": "mean", "column": "monthly_income", "lower": 5, "upper": 1}, catalogue
    )
    assert "finite" in invalid(
        {**base, "measure": "sum", "column": "monthly_income", "lower": 0, "upper": float("inf")},
        catalogue,
    )
    assert "no declared values" in invalid({**base, "group_by": ["grid"]}, catalogue)
    params = RECIPE.validate({**base, "group_by": ["sex", "is_migrant"]}, catalogue)
    assert sorted(params["domain"][0]) == ["F", "M"] and params["domain"][1] == [False, True]
    areas = RECIPE.validate(
        {**base, "group_by": ["grid"], "level": "district", "domain": [["440103", "440104"]]},
        catalogue,
    )
    assert areas["domain"] == [["440103", "440104"]]
    assert RECIPE.privacy_cost(params) == 0.5


def test_the_node_plan_bounds_rows_per_person_and_clamps_values(catalogue: Catalogue) -> None:
    params = RECIPE.validate(
        {
            "kind": "district_population",
            "epsilon": 1.0,
            "measure": "mean",
            "column": "monthly_income",
            "lower": 0,
            "upper": 20000,
            "max_rows_per_person": 2,
        },
        catalogue,
    )
    plan = RECIPE.plan(params, population())
    assert plan.max_rows_per_person == 2 and plan.person_column == "id_number"
    (summed,) = [m for m in plan.measures if m.fn == "sum"]
    assert (summed.lower, summed.upper) == (0.0, 20000.0)
    no_ids = population().model_copy(
        update={"columns": [c for c in population().columns if c.klass != "identifier"]}
    )
    with pytest.raises(TaskRefused, match="no identifier"):
        RECIPE.plan(params, no_ids)


def test_combine_releases_noisy_numbers_over_exactly_the_domain(catalogue: Catalogue) -> None:
    params = RECIPE.validate(
        {"kind": "district_population", "epsilon": 1.0, "group_by": ["age_band"]}, catalogue
    )
    # one node has a single person in 80+, the other nobody; 0-14 missing everywhere
    a = Table(columns=["age_band", "n"], rows=[["25-44", 400], ["80+", 1]])
    b = Table(columns=["age_band", "n"], rows=[["25-44", 300], ["45-59", 200]])
    combined = RECIPE.combine(params, [a, b])
    keys = [row[0] for row in combined.table.rows]
    assert keys == params["domain"][0]  # every declared band, whatever the data had
    counts = dict((row[0], row[1]) for row in combined.table.rows)
    assert all(isinstance(v, int) and v >= 0 for v in counts.values())
    assert 650 < counts["25-44"] < 750  # noise of scale 1 is far below ±50
    # released under the recipe's rules: small noisy cells withheld, no complement needed
    rules = effective(RECIPE.manifest.disclosure)
    assert rules["complementary"] is False and rules["min_query_set"] == 0
    with pytest.raises(JobFailed, match="negative count"):
        RECIPE.combine(params, [Table(columns=["age_band", "n"], rows=[["25-44", -5]])])


def test_noisy_means_stay_inside_the_bounds(catalogue: Catalogue) -> None:
    params = RECIPE.validate(
        {
            "kind": "district_population",
            "epsilon": 0.1,
            "measure": "mean",
            "column": "monthly_income",
            "lower": 0,
            "upper": 100,
            "group_by": ["sex"],
        },
        catalogue,
    )
    part = Table(columns=["sex", "n", "sum"], rows=[["F", 3, 290.0]])
    combined = RECIPE.combine(params, [part])
    assert combined.table.columns == ["sex", "n", "mean"]
    assert all(0.0 <= row[2] <= 100.0 for row in combined.table.rows)
