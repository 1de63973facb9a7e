"""key_groups@1.0.0: sources per group, plans, combine."""

from __future__ import annotations

import pytest

from datalab.errors import InvalidParameters
from datalab.wire import CatalogueDataset, Table
from recipes.contract import Filter, GroupKey, Measure
from recipes.key_groups import KeyGroupsByArea
from tests.recipes.conftest import benefits, health_records

Catalogue = list[tuple[str, CatalogueDataset]]

RECIPE = KeyGroupsByArea()


def test_manifest_declares_sources_and_policy() -> None:
    m = RECIPE.manifest
    assert {r.kind: r.required_columns for r in m.datasets} == {
        "benefit_recipients": ["grid", "benefit"],
        "health_conditions": ["residence_grid", "condition"],
    }
    assert m.disclosure.min_cell == 10 and m.disclosure.complementary
    assert [o.name for o in m.output] == ["<level>", "group", "n"]


def test_validation() -> None:
    assert RECIPE.validate({"group": "elderly"}) == {"group": "elderly", "level": "community"}
    with pytest.raises(InvalidParameters, match="parameter 'group' is required"):
        RECIPE.validate({})
    with pytest.raises(InvalidParameters, match="'group' must be one of elderly, chronic_illness"):
        RECIPE.validate({"group": "students"})
    with pytest.raises(InvalidParameters, match="'level' must be one of district, street"):
        RECIPE.validate({"group": "elderly", "level": "city"})
    with pytest.raises(InvalidParameters, match="unknown parameter 'grid'"):
        RECIPE.validate({"group": "elderly", "grid": "x"})


def test_validation_against_catalogue(catalogue: Catalogue) -> None:
    RECIPE.validate({"group": "pregnancy", "level": "grid"}, catalogue)
    only_health = [("health", health_records())]
    with pytest.raises(InvalidParameters, match="no dataset of kind 'benefit_recipients'"):
        RECIPE.validate({"group": "elderly"}, only_health)
    bare = benefits().model_copy(
        update={"columns": [c for c in benefits().columns if c.name != "benefit"]}
    )
    with pytest.raises(InvalidParameters, match="lacks the column 'benefit'"):
        RECIPE.validate({"group": "elderly"}, [("civil_affairs", bare)])


@pytest.mark.parametrize(
    ("group", "agency", "dataset", "area", "column", "value"),
    [
        ("elderly", "civil_affairs", "benefits", "grid", "benefit", "elderly_allowance"),
        ("disability", "health", "health_records", "residence_grid", "condition", "disability"),
        ("pregnancy", "health", "health_records", "residence_grid", "condition", "pregnancy"),
    ],
)
def test_targets_and_plan(
    catalogue: Catalogue,
    group: str,
    agency: str,
    dataset: str,
    area: str,
    column: str,
    value: str,
) -> None:
    params = RECIPE.validate({"group": group, "level": "street"}, catalogue)
    targets = RECIPE.targets(params, catalogue)
    assert [(t.agency, t.dataset) for t in targets] == [(agency, dataset)]
    ds = dict(catalogue)[agency]
    plan = RECIPE.plan(params, ds)
    assert plan.dataset == dataset
    assert plan.group_by == [GroupKey(column=area, level="street", alias="street")]
    assert plan.filters == [
        Filter(column=column, op="eq", value=value),
        Filter(column=area, op="not_null"),
    ]
    assert plan.measures == [Measure(fn="count", alias="n")]


def test_combine_labels_and_adds() -> None:
    params = RECIPE.validate({"group": "chronic_illness", "level": "community"})
    a = Table(columns=["community", "n"], rows=[["440103001002", 4], ["440103001001", 12]])
    b = Table(columns=["community", "n"], rows=[["440103001001", 3]])
    combined = RECIPE.combine(params, [a, b])
    assert combined.table.columns == ["community", "group", "n"]
    assert combined.table.rows == [
        ["440103001001", "chronic_illness", 15],
        ["440103001002", "chronic_illness", 4],
    ]
    assert combined.key_columns == ["community", "group"]
    assert combined.geo_column == "community" and combined.geo_level == "community"
