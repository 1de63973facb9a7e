"""Disclosure rules over HTTP: every setting listed with value and default; agency admins tighten
their agency's rules and the next release obeys them."""

from __future__ import annotations

from recipes.rules import SETTINGS
from tests.lab_server.conftest import Hub


def test_every_setting_is_listed_with_its_value_and_default(hub: Hub) -> None:
    hub.node("north")
    rules = hub.client.get("/api/v1/privacy/rules", headers=hub.person("ana", "analyst")).json()
    lab = {r["setting"]: r for r in rules if r["scope"] == "lab"}
    assert set(lab) == {s.name for s in SETTINGS}
    for s in SETTINGS:
        assert lab[s.name]["default"] == s.default and lab[s.name]["description"]
    recipe = {r["setting"]: r["value"] for r in rules if r["scope"] == "recipe:count_by_area@1.0"}
    assert recipe["min_cell"] == 5
    assert {"scope": "node:north", "setting": "min_cell", "value": 3} in [
        {k: r[k] for k in ("scope", "setting", "value")} for r in rules
    ]
    one = hub.client.get(
        "/api/v1/privacy/rules",
        params={"recipe": "noisy_count"},
        headers=hub.person("ana", "analyst"),
    ).json()
    assert {r["scope"] for r in one} >= {"lab", "recipe:noisy_count@1.0"}
    assert "recipe:count_by_area@1.0" not in {r["scope"] for r in one}


def test_an_agency_admin_tightens_its_rules_and_the_next_release_obeys(hub: Hub) -> None:
    node = hub.node("north")
    admin = hub.person("adm-n", "agency_admin", "north")
    set_rule = hub.client.put(
        "/api/v1/privacy/rules/north", json={"setting": "min_cell", "value": 20}, headers=admin
    )
    assert set_rule.status_code == 200, set_rule.text
    assert set_rule.json()[0]["value"] == 20
    job_id = hub.submit().json()["job_id"]
    (task,) = node.poll()
    node.answer(node.partial(task, [["a", 15], ["b", 40], ["c", 30]]))
    done = hub.job(job_id)
    assert done["state"] == "released"
    assert done["provenance"]["min_cell"] == 20
    assert done["provenance"]["rules"]["min_cell"] == 20
    rows = dict((r[0], r[1]) for r in done["result"]["rows"])
    assert rows["a"] is None  # 15 < 20: withheld, though the recipe's own minimum is 5
    assert list(rows.values()).count(None) == 2  # and a complement
    assert "disclosure_setting_set" in hub.audit_events()


def test_only_the_agencys_admin_sets_its_rules_and_bad_values_are_refused(hub: Hub) -> None:
    hub.node("north")
    body = {"setting": "min_cell", "value": 2}
    for who in (hub.person("ana", "analyst"), hub.person("adm-s", "agency_admin", "south")):
        response = hub.client.put("/api/v1/privacy/rules/north", json=body, headers=who)
        assert response.status_code == 403
    admin = hub.person("adm-n", "agency_admin", "north")
    for bad, message in (
        ({"setting": "min_cel", "value": 5}, "unknown disclosure setting"),
        ({"setting": "min_cell", "value": 0}, "between"),
        ({"setting": "complementary", "value": "yes"}, "true or false"),
    ):
        response = hub.client.put("/api/v1/privacy/rules/north", json=bad, headers=admin)
        assert response.status_code == 422
        assert message in response.json()["error"]["message"]
