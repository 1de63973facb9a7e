"""separation: parameters, targets, the two nodes' plans (two match levels), and combine."""

from __future__ import annotations

import pytest

from datalab.errors import InvalidParameters
from datalab.wire import CatalogueDataset, Table
from recipes.disclosure import protect
from recipes.separation import Separation
from tests.recipes.conftest import col

RECIPE = Separation()


def _ds(name: str, kind: str) -> CatalogueDataset:
    return CatalogueDataset(
        name=name, kind=kind, rows=100, refreshed_at=0.0, columns=[col("x", "string", "public")]
    )


REGISTRATIONS = _ds("registrations", "population_registration")
TENANCY = _ds("tenancy_contracts", "tenancy")
NIGHTS = _ds("activity_events", "activity_events")
CATALOGUE = [("public_security", REGISTRATIONS), ("housing", TENANCY), ("activity", NIGHTS)]


def test_targets_are_the_evidence_then_the_registrations() -> None:
    params = RECIPE.validate({"source": "night_activity"}, CATALOGUE)
    assert [t.agency for t in RECIPE.targets(params, CATALOGUE)] == [
        "activity",
        "public_security",
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"source": "contributions"}, "source"),  # where people work, not where they live
        ({"source": "tenancy", "match_level": "city"}, "match_level"),
        ({"source": "tenancy", "as_of": "2026-6-30"}, "as_of"),
    ],
)
def test_bad_parameters_name_what_is_wrong(params: dict, message: str) -> None:
    with pytest.raises(InvalidParameters, match=message):
        RECIPE.validate(params, CATALOGUE)


def test_both_nodes_match_at_the_area_and_the_city_on_household_registrations() -> None:
    params = RECIPE.validate({"source": "tenancy", "level": "street", "match_level": "community"})
    client = RECIPE.psi_plan(params, TENANCY)
    server = RECIPE.psi_plan(params, REGISTRATIONS)
    assert (client.role, client.match_level, client.outer_level) == ("client", "community", "city")
    assert client.group_level == "street" and client.active is not None
    assert (server.role, server.match_level, server.outer_level) == ("server", "community", "city")
    assert [(f.column, f.value) for f in server.filters] == [
        ("status", "active"),
        ("reg_type", "household"),
    ]
    nights = RECIPE.psi_plan(RECIPE.validate({"source": "night_activity"}), NIGHTS)
    assert nights.min_records == 2 and nights.outer_level == "city"
    with pytest.raises(InvalidParameters):
        RECIPE.psi_plan(params, NIGHTS)  # not the source asked for


def test_combine_counts_separated_and_withholds_small_cells() -> None:
    params = RECIPE.validate({"source": "tenancy", "level": "district"})
    client = Table(
        columns=["district", "separated", "checked"],
        rows=[
            ["440105", 40, 300],
            ["440106", 3, 200],
            ["440107", 55, 310],
            ["440108", 70, 400],
            ["440111", None, None],
        ],
    )
    combined = RECIPE.combine(params, [client, Table(columns=client.columns, rows=[])])
    assert combined.count_column == "separated"
    released = {r[0]: r[1] for r in protect(combined, 10, True).table.rows}
    assert released["440108"] == 70
    assert released["440106"] is None and released["440111"] is None
