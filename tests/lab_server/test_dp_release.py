"""A differentially private release depends on the data only through its noise: the hub's
exact query-set rules (``min_query_set``, ``min_complement``), which look at exact sizes, are
not applied to it, even when an agency tightens them; they still apply to exact recipes."""

from __future__ import annotations

from tests.lab_server.conftest import Hub


def test_an_agencys_query_set_minimum_refuses_exact_releases_but_not_dp_ones(hub: Hub) -> None:
    node = hub.node("north")
    admin = hub.person("adm-n", "agency_admin", "north")
    rule = {"setting": "min_query_set", "value": 500}  # the node's partials say 100 rows
    response = hub.client.put("/api/v1/privacy/rules/north", json=rule, headers=admin)
    assert response.status_code == 200, response.text
    jobs = {}
    for recipe, params in (("count_by_area", {}), ("noisy_count", {"epsilon": 0.5})):
        jobs[recipe] = hub.submit(recipe=recipe, params=params).json()["job_id"]
        (task,) = node.poll()
        assert node.answer(node.partial(task, [["a", 60], ["b", 40]])).status_code == 200
    exact = hub.job(jobs["count_by_area"])
    assert exact["state"] == "refused" and "query set too small" in exact["error"]["message"]
    dp = hub.job(jobs["noisy_count"])
    assert dp["state"] == "released", dp["error"]
    assert dp["provenance"]["rules"]["min_query_set"] == 500  # the rule is in force, unused
