"""The privacy-budget ledger, on every store backend (SQLite, and PostgreSQL when configured):
concurrent debits near the cap, refusal, visibility, admin caps, and a crash between debit and
release."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import func, select

from datalab.errors import BudgetExhausted
from lab_server import budget
from lab_server.audit import verify_chain
from lab_server.db import BudgetDebit, Database
from tests.lab_server.conftest import Hub, make_settings, running_hub

SCOPE = budget.dataset_scope("north", "people")


def test_fifty_concurrent_debits_near_the_cap_never_overspend(database_url: str) -> None:
    # five Database objects stand for five hub processes: no in-process lock is shared, so
    # only the database's conditional UPDATE can keep the sum under the cap
    dbs = [Database(database_url) for _ in range(5)]
    dbs[0].create_all()
    with dbs[0].write() as session:
        budget.set_cap(session, "north", SCOPE, "ana", 1.0, "admin-north")
        budget.debit(session, "ana", [SCOPE], 0.75, "job-warmup")
    start = threading.Barrier(50)
    outcomes: list[bool] = []

    def one(i: int) -> bool:
        start.wait()
        try:
            with dbs[i % 5].write() as session:
                budget.debit(session, "ana", [SCOPE], 0.1, f"job-{i}")
            return True
        except BudgetExhausted:
            return False

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(one, range(50)))
    assert sum(outcomes) == 2  # 0.75 + 0.1 + 0.1 = 0.95; a third would pass 1.0
    with dbs[0].read() as session:
        assert abs(budget.spent(session, "ana", SCOPE) - 0.95) < 1e-9
        debits = session.execute(select(func.count()).select_from(BudgetDebit)).scalar_one()
        assert debits == 3
        assert verify_chain(session).ok
    for db in dbs:
        db.dispose()


def test_fifty_concurrent_jobs_through_the_api_never_overspend(store_hub: Hub) -> None:
    hub = store_hub
    hub.node("north")
    admin = hub.person("adm-n", "agency_admin", "north")
    set_cap = {"scope": SCOPE, "analyst": "ana", "epsilon": 1.0}
    assert hub.client.put("/api/v1/privacy/budget", json=set_cap, headers=admin).status_code == 200
    hub.person("ana", "analyst")

    def submit(_: int) -> int:
        body = {"recipe": "noisy_count", "params": {"epsilon": 0.3}}
        return int(hub.submit(**body).status_code)

    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(submit, range(50)))
    assert codes.count(202) == 3 and codes.count(403) == 47  # 0.9 spent; 1.2 would pass 1.0
    mine = hub.client.get("/api/v1/privacy/budget", headers=hub.person("ana", "analyst")).json()
    (row,) = [b for b in mine if b["scope"] == SCOPE]
    assert abs(row["spent"] - 0.9) < 1e-9 and row["cap"] == 1.0
    assert abs(row["remaining"] - 0.1) < 1e-9


def test_an_exhausted_budget_is_refused_clearly_and_caps_belong_to_the_agency(
    store_hub: Hub,
) -> None:
    hub = store_hub
    hub.node("north")
    too_much = hub.submit(recipe="noisy_count", params={"epsilon": 2.0})
    assert too_much.status_code == 422  # max_epsilon_per_query defaults to 1
    assert "epsilon" in too_much.json()["error"]["message"]
    body = {"recipe": "noisy_count", "params": {"epsilon": 1.0}}
    for _ in range(3):
        assert hub.submit(**body).status_code == 202  # the lab default cap is 3.0
    refused = hub.submit(**body)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "budget_exhausted"
    assert SCOPE in error["message"] and "left" in error["message"]
    assert "job_rejected" in hub.audit_events()
    # only north's admin may change north's caps; analysts may not
    update = {"scope": SCOPE, "analyst": "ana", "epsilon": 5.0}
    south = hub.person("adm-s", "agency_admin", "south")
    assert hub.client.put("/api/v1/privacy/budget", json=update, headers=south).status_code == 403
    ana = hub.person("ana", "analyst")
    assert hub.client.put("/api/v1/privacy/budget", json=update, headers=ana).status_code == 403
    north = hub.person("adm-n", "agency_admin", "north")
    raised = hub.client.put("/api/v1/privacy/budget", json=update, headers=north)
    assert raised.status_code == 200 and raised.json()["remaining"] == 2.0
    assert hub.submit(**body).status_code == 202
    bad = {"scope": SCOPE, "analyst": "ana", "epsilon": -1}
    assert hub.client.put("/api/v1/privacy/budget", json=bad, headers=north).status_code == 422
    unknown = {"scope": "dataset:north/nope", "epsilon": 1.0}
    assert hub.client.put("/api/v1/privacy/budget", json=unknown, headers=north).status_code == 404


def test_a_crash_between_debit_and_release_keeps_spent_at_least_released(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path / "hub", database_url)
    with running_hub(settings) as hub:
        key = hub.node("north").key
        job_id = hub.submit(recipe="noisy_count", params={"epsilon": 0.5}).json()["job_id"]
        tokens = dict(hub.tokens)
        # the hub goes down here: debited, tasks issued, nothing computed or released
    with running_hub(settings) as hub:
        hub.tokens.update(tokens)
        events = hub.audit_events()
        assert "budget_debited" in events and "result_released" not in events
        assert hub.job(job_id)["state"] == "queued"
        mine = hub.client.get("/api/v1/privacy/budget", headers=hub.person("ana", "analyst"))
        (row,) = [b for b in mine.json() if b["scope"] == SCOPE]
        assert abs(row["spent"] - 0.5) < 1e-9  # a new process, a new session: never reset
        north = hub.node("north", key)
        (task,) = north.poll()
        assert north.answer(north.partial(task, [["a", 40]])).status_code == 200
        done = hub.job(job_id)
        assert done["state"] == "released"
        with hub.services.db.read() as session:
            spent = budget.spent(session, "ana", SCOPE)
            assert verify_chain(session).ok
        audit = hub.client.get("/api/v1/audit", headers=hub.person("aud", "auditor")).json()
        released = [e for e in audit if e["event"] == "result_released"]
        # nothing released unlogged: the one release has its entry with the result's digest
        assert [e["data"]["job_id"] for e in released] == [job_id]
        assert released[0]["data"]["result_sha256"] == done["provenance"]["result_sha256"]
        assert done["provenance"]["epsilon"] == 0.5
        assert spent >= done["provenance"]["epsilon"] - 1e-9
