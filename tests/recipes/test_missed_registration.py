"""missed_registration: parameters, targets, the two nodes' plans, and combine."""

from __future__ import annotations

import pytest

from datalab.errors import InvalidParameters
from datalab.wire import CatalogueDataset, Table
from recipes.disclosure import protect
from recipes.missed_registration import MissedRegistration
from tests.recipes.conftest import col

RECIPE = MissedRegistration()


def _ds(name: str, kind: str, columns: list[str]) -> CatalogueDataset:
    return CatalogueDataset(
        name=name,
        kind=kind,
        rows=100,
        refreshed_at=0.0,
        columns=[col(c, "string", "public") for c in columns],
    )


REGISTRATIONS = _ds("registrations", "population_registration", ["id_number", "reg_grid"])
TENANCY = _ds("tenancy_contracts", "tenancy", ["tenant_id_number", "grid"])
CATALOGUE = [("public_security", REGISTRATIONS), ("housing", TENANCY)]


def test_targets_are_the_source_then_the_registrations() -> None:
    params = RECIPE.validate({"source": "tenancy"}, CATALOGUE)
    assert [(t.agency, t.dataset) for t in RECIPE.targets(params, CATALOGUE)] == [
        ("housing", "tenancy_contracts"),
        ("public_security", "registrations"),
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"source": "rumours"}, "source"),
        ({"source": "tenancy", "as_of": "30/06/2026"}, "as_of"),
        ({"source": "tenancy", "mode": "everything"}, "mode"),
        ({"source": "night_activity"}, "activity_events"),  # no such dataset in the catalogue
    ],
)
def test_bad_parameters_name_what_is_wrong(params: dict, message: str) -> None:
    with pytest.raises(InvalidParameters, match=message):
        RECIPE.validate(params, CATALOGUE)


def test_each_node_gets_its_role_and_an_aggregate_plan_is_refused() -> None:
    params = RECIPE.validate({"source": "tenancy", "level": "street", "cascade": False})
    client = RECIPE.psi_plan(params, TENANCY)
    server = RECIPE.psi_plan(params, REGISTRATIONS)
    assert (client.role, client.group_level, client.cascade) == ("client", "street", False)
    assert client.active is not None and client.active.on == "2026-06-30"
    assert (server.role, server.area_column, server.group_level) == ("server", "reg_grid", None)
    assert [f.value for f in server.filters] == ["active"]
    with pytest.raises(InvalidParameters):
        RECIPE.plan(params, TENANCY)


def test_contributions_window_and_night_threshold() -> None:
    contributions = _ds("contributions", "social_insurance_contributions", ["id_number"])
    params = RECIPE.validate({"source": "contributions", "as_of": "2026-02-15"})
    plan = RECIPE.psi_plan(params, contributions)
    assert [(f.op, f.value) for f in plan.filters] == [("ge", "2025-12"), ("le", "2026-02")]
    night = _ds("activity_events", "activity_events", ["person_id"])
    plan = RECIPE.psi_plan(RECIPE.validate({"source": "night_activity", "min_nights": 3}), night)
    assert plan.min_records == 3 and plan.identity.name is None


def test_combine_keeps_unqueried_groups_withheld() -> None:
    params = RECIPE.validate({"source": "tenancy", "level": "district"})
    client = Table(
        columns=["district", "missed", "checked"],
        rows=[["440105", 40, 300], ["440106", None, None], ["440111", 25, 200]],
    )
    server = Table(columns=["district", "missed", "checked"], rows=[])
    combined = RECIPE.combine(params, [client, server])
    assert combined.count_column == "missed" and combined.geo_level == "district"
    released = protect(combined, 10, True).table
    by_area = {r[0]: r[1] for r in released.rows}
    assert by_area["440106"] is None
    one = RECIPE.combine(
        RECIPE.validate({"source": "tenancy", "mode": "cardinality"}),
        [Table(columns=["missed", "checked"], rows=[[65, 500]])],
    )
    assert one.table.rows == [[65, 500]] and one.key_columns == []


def test_should_cancel_asks_from_the_registrations_and_flags_the_matched() -> None:
    from recipes.should_cancel import ShouldCancel

    recipe = ShouldCancel()
    deaths = _ds("deaths", "death_registrations", ["id_number", "grid"])
    catalogue = [("public_security", REGISTRATIONS), ("health", deaths)]
    params = recipe.validate({"level": "street"}, catalogue)
    assert [t.agency for t in recipe.targets(params, catalogue)] == ["public_security", "health"]
    client = recipe.psi_plan(params, REGISTRATIONS)
    server = recipe.psi_plan(params, deaths)
    assert (client.role, client.flag, client.match_level) == ("client", "matched", "city")
    assert (server.role, server.match_level) == ("server", "city")
    combined = recipe.combine(
        params, [Table(columns=["street", "deceased", "checked"], rows=[["440105001", 12, 900]])]
    )
    assert combined.count_column == "deceased"
