"""The shared store suite: every test here runs on SQLite and (when configured) PostgreSQL.

It covers what depends on the database: the job state machine end to end, refusals, timeouts,
restart safety and the audit chain.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import delete, select, update

from datalab.canonical import digest
from datalab.log_proofs import check_receipt
from datalab.signing import verify_value
from datalab.wire import AuditReceipt, PartialStatus
from lab_server.audit import verify_chain
from lab_server.db import AuditRow, Job
from tests.lab_server.conftest import Hub, make_settings, running_hub


def test_job_flow_releases_a_protected_result_with_provenance(store_hub: Hub) -> None:
    hub = store_hub
    north, south = hub.node("north"), hub.node("south")
    response = hub.submit(params={"min_age": 18})
    assert response.status_code == 202, response.text
    view = response.json()
    assert view["state"] == "queued"
    assert {t["agency"] for t in view["tasks"]} == {"north", "south"}

    hub_key = hub.client.get("/api/v1/hub").json()["public_key"]
    north_tasks, south_tasks = north.poll(), south.poll()
    assert len(north_tasks) == len(south_tasks) == 1
    for signed in (*north_tasks, *south_tasks):
        verify_value(hub_key, signed.task.model_dump(mode="json"), signed.signature)
        assert signed.task.params == {"min_age": 18, "column": "area"}
    assert north.poll() == []  # delivered once
    assert hub.job(view["job_id"])["state"] == "running"

    assert (
        north.answer(north.partial(north_tasks[0], [["a", 10], ["b", 2], ["c", 8]])).status_code
        == 200
    )
    assert hub.job(view["job_id"])["state"] == "running"
    south_partial = south.partial(south_tasks[0], [["a", 5], ["b", 1], ["c", 4]])
    answered = south.answer(south_partial).json()
    assert answered["accepted"] is True
    # the answer comes with an audit receipt proving its entry is in the hub's signed tree
    check_receipt(
        AuditReceipt.model_validate(answered["receipt"]),
        hub_key,
        task_id=south_partial.partial.task_id,
        partial_sha256=digest(south_partial.partial.model_dump(mode="json")),
        last=None,
    )
    done = hub.job(view["job_id"], wait=5)
    assert done["state"] == "released", done
    result = done["result"]
    assert result["columns"] == ["area", "n"]
    assert result["rows"][0] == ["a", 15]
    assert result["rows"][1] == ["b", None]  # b = 3 < min_cell 5: suppressed
    assert result["rows"][2] == ["c", None]  # complementary: else b = total - a - c
    prov = done["provenance"]
    assert prov["agencies"] == ["north", "south"]
    assert prov["min_cell"] == 5
    assert prov["suppressed_cells"] == 2
    assert prov["suppression"]
    assert prov["result_sha256"] == digest(result)
    assert prov["code_sha256"] == done["code_sha256"]
    events = hub.audit_events()
    for expected in ("job_requested", "task_issued", "task_delivered", "partial_received"):
        assert expected in events
    assert events[-1] == "result_released"


def test_partials_are_idempotent_and_first_answer_wins(store_hub: Hub) -> None:
    hub = store_hub
    node = hub.node("north")
    job_id = hub.submit().json()["job_id"]
    (task,) = node.poll()
    first = node.partial(task, [["a", 20]])
    assert node.answer(first).status_code == 200
    assert node.answer(first).status_code == 200  # same answer again: fine
    different = node.partial(task, [["a", 21]])
    assert node.answer(different).status_code == 409
    assert hub.job(job_id)["result"]["rows"] == [["a", 20]]
    assert hub.audit_events().count("partial_received") == 1


def test_a_node_refusal_refuses_the_job_naming_agency_and_reason(store_hub: Hub) -> None:
    hub = store_hub
    north, south = hub.node("north"), hub.node("south")
    job_id = hub.submit().json()["job_id"]
    (task,) = north.poll()
    south.poll()
    refusal = north.partial(task, status=PartialStatus.REFUSED, reason="recipe not approved")
    assert north.answer(refusal).status_code == 200
    view = hub.job(job_id)
    assert view["state"] == "refused"
    assert view["error"]["code"] == "job_refused"
    assert "north" in view["error"]["message"]
    assert "recipe not approved" in view["error"]["message"]
    assert view["result"] is None
    events = hub.audit_events()
    assert "task_refused" in events and events[-1] == "job_refused"


def test_a_silent_node_times_out_and_fails_the_job(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path / "hub", database_url, node_timeout_s=1.5)
    with running_hub(settings) as hub:
        north, _south = hub.node("north"), hub.node("south")
        job_id = hub.submit().json()["job_id"]
        (task,) = north.poll()
        north.answer(north.partial(task, [["a", 50]]))
        view = hub.job(job_id, wait=5)
        if view["state"] != "failed":
            view = hub.job(job_id, wait=5)
        assert view["state"] == "failed", view
        assert view["error"]["message"] == "node south did not answer within 1.5 s"
        states = {t["agency"]: t["state"] for t in view["tasks"]}
        assert states == {"north": "done", "south": "timed_out"}
        assert "task_timed_out" in hub.audit_events()
        assert hub.audit_events()[-1] == "job_failed"


def test_a_recipe_that_allows_missing_nodes_releases_without_them(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path / "hub", database_url, node_timeout_s=1.5)
    with running_hub(settings) as hub:
        north, _south = hub.node("north"), hub.node("south")
        job_id = hub.submit(recipe="count_allowing_missing").json()["job_id"]
        (task,) = north.poll()
        north.answer(north.partial(task, [["a", 50]]))
        deadline = time.monotonic() + 5
        view = hub.job(job_id)
        while view["state"] != "released" and time.monotonic() < deadline:
            view = hub.job(job_id, wait=1)
        assert view["state"] == "released", view
        assert view["provenance"]["missing_agencies"] == ["south"]
        assert view["provenance"]["agencies"] == ["north"]
        assert view["result"]["rows"] == [["a", 50]]


def test_restart_keeps_jobs_and_audit_and_redelivers_unanswered_tasks(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path / "hub", database_url)
    with running_hub(settings) as hub:
        north = hub.node("north")
        key = north.key
        job_id = hub.submit().json()["job_id"]
        (before,) = north.poll()
        entries = len(hub.audit_events())
        tokens = dict(hub.tokens)
    with running_hub(settings) as hub:
        hub.tokens.update(tokens)
        assert hub.job(job_id)["state"] == "running"
        assert len(hub.audit_events()) >= entries
        north = hub.node("north", key)  # re-registers with the same pinned key
        (again,) = north.poll()
        assert again == before  # the same signed task, same nonce
        north.answer(north.partial(again, [["a", 12]]))
        assert hub.job(job_id)["state"] == "released"
        check = hub.client.get("/api/v1/audit/verify", headers=hub.person("aud", "auditor"))
        assert check.json()["ok"] is True


def test_audit_chain_verifies_and_detects_an_edited_or_deleted_entry(store_hub: Hub) -> None:
    hub = store_hub
    node = hub.node("north")
    job_id = hub.submit(params={"min_age": 30}).json()["job_id"]
    (task,) = node.poll()
    node.answer(node.partial(task, [["a", 40]]))
    auditor = hub.person("aud", "auditor")
    report = hub.client.get("/api/v1/audit/verify", headers=auditor).json()
    assert report["ok"] is True and report["first_bad"] is None and report["entries"] >= 6

    entries = hub.client.get("/api/v1/audit", headers=auditor).json()
    released = next(e for e in entries if e["event"] == "result_released")
    assert set(released["data"]) >= {"job_id", "result_sha256"}
    assert "rows" not in str(released["data"])  # digests only, never the table
    assert hub.job(job_id)["provenance"]["result_sha256"] == released["data"]["result_sha256"]

    db = hub.services.db
    requested = next(e for e in entries if e["event"] == "job_requested")
    with db.read() as session:
        original = session.scalar(select(AuditRow.data).where(AuditRow.seq == requested["seq"]))
    assert original is not None and '"min_age":30' in original
    with db.write() as session:
        session.execute(
            update(AuditRow)
            .where(AuditRow.seq == requested["seq"])
            .values(data=original.replace('"min_age":30', '"min_age":31'))
        )
    report = hub.client.get("/api/v1/audit/verify", headers=auditor).json()
    assert report["ok"] is False and report["first_bad"] == requested["seq"]
    with db.read() as session:
        assert verify_chain(session).first_bad == requested["seq"]

    with db.write() as session:
        session.execute(
            update(AuditRow).where(AuditRow.seq == requested["seq"]).values(data=original)
        )
    with db.read() as session:
        assert verify_chain(session).ok
    with db.write() as session:
        session.execute(delete(AuditRow).where(AuditRow.seq == requested["seq"] + 1))
    with db.read() as session:
        check = verify_chain(session)
    assert not check.ok and check.first_bad == requested["seq"] + 1


def test_concurrent_jobs_keep_one_unbroken_chain(store_hub: Hub) -> None:
    from concurrent.futures import ThreadPoolExecutor

    hub = store_hub
    hub.node("north")
    headers = hub.person("ana", "analyst")

    def submit(_: int) -> int:
        return hub.client.post(
            "/api/v1/jobs", json={"recipe": "count_by_area"}, headers=headers
        ).status_code

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(submit, range(8))) == {202}
    with hub.services.db.read() as session:
        assert verify_chain(session).ok
        assert len(session.execute(select(Job.id)).all()) == 8
