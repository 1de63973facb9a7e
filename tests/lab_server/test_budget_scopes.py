"""Budget scopes of a pair of agencies (DP matching): set by the agency whose side it is,
checked against the registered agencies, shown to the analyst once capped or used."""

from __future__ import annotations

from tests.lab_server.conftest import Hub


def test_a_pair_scope_is_capped_by_its_agency_and_shown_to_the_analyst(hub: Hub) -> None:
    hub.node("north")
    hub.node("south")
    north = hub.person("adm-n", "agency_admin", "north")
    south = hub.person("adm-s", "agency_admin", "south")
    cap = {"scope": "psi:north/south", "analyst": "ana", "epsilon": 1.5}
    put = hub.client.put("/api/v1/privacy/budget", json=cap, headers=north)
    assert put.status_code == 200, put.text
    assert put.json()["remaining"] == 1.5
    assert hub.client.put("/api/v1/privacy/budget", json=cap, headers=south).status_code == 403
    for scope, status, message in (
        ("psi:north/nowhere", 404, "nowhere"),
        ("pair:north/south", 422, "'psi:'"),
        ("psi-north-south", 422, "psi:<agency>/<counterparty>"),
    ):
        bad = hub.client.put("/api/v1/privacy/budget", json={**cap, "scope": scope}, headers=north)
        assert bad.status_code == status, bad.text
        assert message in bad.json()["error"]["message"]
    mine = hub.client.get("/api/v1/privacy/budget", headers=hub.person("ana", "analyst")).json()
    pairs = [b for b in mine if b["scope"].startswith("psi:")]
    assert pairs == [
        {"analyst": "ana", "scope": "psi:north/south", "cap": 1.5, "spent": 0.0, "remaining": 1.5}
    ]
