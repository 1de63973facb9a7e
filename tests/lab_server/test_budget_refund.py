"""Refunds of the privacy budget, on every store backend: a DP job that fails before any node
returned a result gets its epsilon back (nothing was learned), in the transaction that ends it
and with an audit entry; a job refused by a node, or failed after a partial arrived, keeps its
debit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from datalab.wire import PartialStatus
from lab_server import budget
from lab_server.audit import verify_chain
from lab_server.db import BudgetDebit
from tests.lab_server.conftest import Hub, make_settings, running_hub

NORTH = budget.dataset_scope("north", "people")
SOUTH = budget.dataset_scope("south", "people")


def _balances(hub: Hub) -> dict[str, float]:
    mine = hub.client.get("/api/v1/privacy/budget", headers=hub.person("ana", "analyst")).json()
    return {b["scope"]: b["spent"] for b in mine}


def _audit(hub: Hub) -> list[dict[str, Any]]:
    response = hub.client.get("/api/v1/audit", headers=hub.person("aud", "auditor"))
    return [e for e in response.json() if e["event"].startswith("budget_")]


def test_a_job_failing_before_any_result_is_refunded_once_and_audited(store_hub: Hub) -> None:
    hub = store_hub
    north = hub.node("north")
    job_id = hub.submit(recipe="noisy_count", params={"epsilon": 0.5}).json()["job_id"]
    assert abs(_balances(hub)[NORTH] - 0.5) < 1e-9  # debited before anything ran
    (task,) = north.poll()
    failed = north.partial(task, status=PartialStatus.FAILED, reason="disk full")
    assert north.answer(failed).status_code == 200
    assert hub.job(job_id)["state"] == "failed"
    assert abs(_balances(hub)[NORTH]) < 1e-9
    events = [(e["event"], e["data"]["job_id"], e["data"]["epsilon"]) for e in _audit(hub)]
    assert events == [("budget_debited", job_id, 0.5), ("budget_refunded", job_id, 0.5)]
    # the same answer again changes nothing: refunded once
    assert north.answer(failed).status_code == 200
    assert abs(_balances(hub)[NORTH]) < 1e-9
    with hub.services.db.read() as session:
        ledger = session.execute(
            select(BudgetDebit.epsilon).where(BudgetDebit.job_id == job_id)
        ).scalars()
        assert sorted(ledger) == [-0.5, 0.5]  # the ledger's entries sum to what is spent
        assert verify_chain(session).ok
    # the refunded epsilon can be spent again: 3 × 1.0 fit the default cap of 3.0
    for _ in range(3):
        assert hub.submit(recipe="noisy_count", params={"epsilon": 1.0}).status_code == 202


def test_a_refusal_and_a_failure_after_a_partial_keep_their_debit(store_hub: Hub) -> None:
    hub = store_hub
    north, south = hub.node("north"), hub.node("south")
    # refused by a node: a refusal may depend on the data (e.g. PSI's minimum set), so it costs
    refused_job = hub.submit(recipe="noisy_count", params={"epsilon": 0.25}).json()["job_id"]
    (task,) = north.poll()
    north.answer(north.partial(task, status=PartialStatus.REFUSED, reason="not approved"))
    assert hub.job(refused_job)["state"] == "refused"  # settled at once; south's task ends
    assert south.poll() == []
    # north answered, south failed: north's partial reached the hub, so the debit stays
    failed_job = hub.submit(recipe="noisy_count", params={"epsilon": 0.25}).json()["job_id"]
    (task,) = north.poll()
    assert north.answer(north.partial(task, [["a", 40]])).status_code == 200
    (task,) = south.poll()
    south.answer(south.partial(task, status=PartialStatus.FAILED, reason="crashed"))
    assert hub.job(failed_job)["state"] == "failed"
    spent = _balances(hub)
    assert abs(spent[NORTH] - 0.5) < 1e-9 and abs(spent[SOUTH] - 0.5) < 1e-9
    assert "budget_refunded" not in [e["event"] for e in _audit(hub)]


def test_a_job_whose_nodes_never_answer_is_refunded_when_it_times_out(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path / "hub", database_url, node_timeout_s=0.3)
    with running_hub(settings) as hub:
        north = hub.node("north")
        job_id = hub.submit(recipe="noisy_count", params={"epsilon": 0.75}).json()["job_id"]
        assert len(north.poll()) == 1  # delivered, never answered
        deadline = time.monotonic() + 5
        view = hub.job(job_id)
        while view["state"] != "failed" and time.monotonic() < deadline:
            view = hub.job(job_id, wait=1)
        assert view["state"] == "failed", view
        assert abs(_balances(hub)[NORTH]) < 1e-9
        assert [e["event"] for e in _audit(hub)] == ["budget_debited", "budget_refunded"]
