"""The asking node's units, and the separation difference on the real openmined-psi."""

from __future__ import annotations

import pyarrow as pa

from node_agent.psi_engine import PsiClient, PsiServer, response_parts
from node_agent.psi_query_sets import (
    client_sets,
    flagged_elements,
    group_counts,
    query_units,
    server_set,
)
from recipes.psi_contract import Identity, PsiPlan

A1, A2, B1 = "440103001001001", "440103001001002", "440103002001001"  # two communities


def _plan(**extra) -> PsiPlan:
    fields = {
        "role": "client",
        "dataset": "d",
        "identity": Identity(id="id"),
        "area_column": "grid",
        "match_level": "grid",
        "outer_level": "city",
        "group_level": "community",
    }
    return PsiPlan.model_validate({**fields, **extra})


def _match(plan: PsiPlan, units, server_items):
    out = {}
    for unit, items in units.items():
        client = PsiClient(reveal=plan.mode == "reveal")
        server = PsiServer(reveal=plan.mode == "reveal")
        setup = server.setup(server_items, len(items))
        (points,) = server.answer([client.requests(items)])
        responses = response_parts(points)
        if plan.mode == "reveal":
            out[unit] = set(client.intersection(setup, responses, len(items)))
        else:
            out[unit] = client.cardinality(setup, responses, len(items))
    return out


def _tenancy() -> pa.Table:
    ids, grids = [], []
    for i in range(60):
        home = A1 if i < 30 else B1
        ids += [_id(i)] * 2
        grids += [home, home]
    ids.append(_id(0))  # person 0 also once in B1: placed where most records are (A1)
    grids.append(B1)
    return pa.table({"id": ids, "grid": grids})


def _registrations() -> pa.Table:
    """0–9 registered where they live; 10–19 in the next grid of the same community; 20–29
    nowhere; 30–44 in the other community; 45–59 where they live."""
    rows = [(i, A1) for i in range(10)] + [(i, A2) for i in range(10, 20)]
    rows += [(i, A1) for i in range(30, 45)] + [(i, B1) for i in range(45, 60)]
    return pa.table({"id": [_id(i) for i, _ in rows], "reg_grid": [g for _, g in rows]})


def _server(plan: PsiPlan) -> list[str]:
    server_plan = plan.model_copy(update={"role": "server", "area_column": "reg_grid"})
    items, _ = server_set(_registrations(), server_plan)
    return items


def _id(i: int) -> str:
    """A valid 18-character ID (GB 11643 checksum)."""
    from datalab.gb11643 import check_char

    body = f"44010319900101{i:03d}"
    return body + check_char(body)


def test_each_person_is_placed_in_one_area_and_queried_at_both_levels() -> None:
    sets = client_sets(_tenancy(), _plan())
    assert {g: len(v) for g, v in sets.by_group.items()} == {A1[:12]: 30, B1[:12]: 30}
    units = query_units(sets, _plan(), min_set=20)
    assert list(units) == [
        (A1[:12], "match"),
        (A1[:12], "outer"),
        (B1[:12], "match"),
        (B1[:12], "outer"),
    ]
    assert units[(A1[:12], "outer")][0] == f"id:{_id(0)}@4401"
    assert not query_units(sets, _plan(), min_set=31)  # no group reaches the minimum


def test_separated_is_registered_in_the_city_minus_registered_where_they_live() -> None:
    plan = _plan()
    sets = client_sets(_tenancy(), plan)
    units = query_units(sets, plan, min_set=20)
    matched = _match(plan, units, _server(plan))
    assert group_counts(sets, plan, units, matched) == {A1[:12]: (10, 30), B1[:12]: (15, 30)}
    # "another area" at community level: moving grids inside the community is not separation
    coarse = _plan(match_level="community")
    sets = client_sets(_tenancy(), coarse)
    units = query_units(sets, coarse, min_set=20)
    matched = _match(coarse, units, _server(coarse))
    assert group_counts(sets, coarse, units, matched) == {A1[:12]: (0, 30), B1[:12]: (15, 30)}


def test_reveal_lists_exactly_the_separated_people() -> None:
    plan = _plan(mode="reveal")
    sets = client_sets(_tenancy(), plan)
    units = query_units(sets, plan, min_set=20)
    assert list(units) == [("", "match"), ("", "outer")]
    found = _match(plan, units, _server(plan))
    flagged = flagged_elements(plan, units, found)
    expected = {f"id:{_id(i)}@{A1}" for i in range(10, 20)}
    expected |= {f"id:{_id(i)}@{B1}" for i in range(30, 45)}
    assert flagged == expected
