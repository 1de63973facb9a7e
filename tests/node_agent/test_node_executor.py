"""The executor checks every task on the node's own authority: each refusal gives a public
reason, is logged locally, and releases nothing; the happy path yields a signed partial of
aggregates only."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from datalab.signing import SigningKey, verify_value
from datalab.wire import PartialStatus, SignedPartial, SignedTask
from node_agent.connector import DuckDBConnector
from node_agent.executor import FAILED_REASON, Executor
from node_agent.log import read_entries, verify_log
from recipes.contract import AggregatePlan
from tests.node_agent.conftest import TaskFactory

ID_PREFIX = "44010319"  # every identifier in the test data starts with it


def check_signed(executor: Executor, answer: SignedPartial) -> None:
    verify_value(
        executor.node_key.public_key, answer.partial.model_dump(mode="json"), answer.signature
    )


def log_events(executor: Executor) -> list[dict[str, Any]]:
    return list(read_entries(executor.settings.log_path))


def test_happy_path_gives_a_signed_partial_of_aggregates(
    executor: Executor, make_task: TaskFactory, frame
):
    signed = make_task(
        {
            "group_by": ["grid", "sex"],
            "level": "street",
            "sum": "monthly_income",
            "distinct": "id_number",
        }
    )
    answer = executor.execute(signed)
    check_signed(executor, answer)
    partial = answer.partial
    assert partial.status is PartialStatus.OK, partial.reason
    assert partial.task_id == signed.task.task_id
    assert partial.code_sha256 == signed.task.code_sha256
    assert partial.min_cell == 10
    assert partial.query_set_size == len(frame)
    assert partial.table is not None
    assert partial.table.columns == ["street", "sex", "n", "total", "d"]
    assert sum(r[2] for r in partial.table.rows) == len(frame)
    wire = answer.model_dump_json()
    assert ID_PREFIX not in wire and "Person " not in wire
    events = [e["event"] for e in log_events(executor)]
    assert events == ["task_received", "task_done"]
    done = log_events(executor)[-1]["data"]
    assert done["query_set_size"] == len(frame)
    assert done["partial_signature"] == answer.signature
    assert len(done["table_sha256"]) == 64
    assert verify_log(executor.settings.log_path, executor.node_key.public_key).ok


def _refused(executor: Executor, signed: SignedTask, *words: str) -> SignedPartial:
    answer = executor.execute(signed)
    check_signed(executor, answer)
    partial = answer.partial
    assert partial.status is PartialStatus.REFUSED, partial
    assert partial.table is None
    assert all(w in (partial.reason or "") for w in words), partial.reason
    last = log_events(executor)[-1]
    assert last["event"] == "task_refused"
    assert last["data"]["reason"] == partial.reason
    assert last["data"]["task_id"] == signed.task.task_id
    return answer


def test_bad_hub_signature(executor: Executor, make_task: TaskFactory):
    _refused(executor, make_task(key=SigningKey.generate()), "signature does not verify")


def test_tampered_task(executor: Executor, make_task: TaskFactory):
    signed = make_task({"group_by": ["sex"]})
    tampered = signed.task.model_copy(update={"params": {"group_by": ["id_number"]}})
    _refused(executor, SignedTask(task=tampered, signature=signed.signature), "signature")


def test_replayed_task(executor: Executor, make_task: TaskFactory):
    signed = make_task()
    assert executor.execute(signed).partial.status is PartialStatus.OK
    _refused(executor, signed, "replayed")
    # the same task id under a fresh nonce is a replay too
    again = make_task(task_id=signed.task.task_id)
    _refused(executor, again, "replayed")


def test_replay_survives_a_restart(executor: Executor, make_task: TaskFactory):
    from node_agent.replay import NonceStore

    signed = make_task()
    executor.execute(signed)
    executor.nonces.close()
    executor.nonces = NonceStore(executor.settings.nonces_path)
    _refused(executor, signed, "replayed")


def test_expired_task(executor: Executor, make_task: TaskFactory):
    now = time.time()
    _refused(executor, make_task(issued_at=now - 120, expires_at=now - 60), "expired")


def test_task_from_the_future(executor: Executor, make_task: TaskFactory):
    now = time.time()
    _refused(executor, make_task(issued_at=now + 3600, expires_at=now + 3660), "future")


def test_wrong_agency(executor: Executor, make_task: TaskFactory):
    _refused(executor, make_task(agency="health"), "addressed to agency 'health'")


def test_unapproved_recipe_names_the_command(executor: Executor, make_task: TaskFactory):
    executor.approvals.revoke("test_plan", "1.0.0")
    answer = _refused(executor, make_task(), "not approved by agency district_440103")
    assert "datalab node approve --agency district_440103 --recipe test_plan@1.0.0" in (
        answer.partial.reason or ""
    )


def test_code_hash_differs_from_the_local_recipe(executor: Executor, make_task: TaskFactory):
    _refused(executor, make_task(code_sha256="ab" * 32), "differs from this node's copy")


def test_approval_pins_another_hash(executor: Executor, make_task: TaskFactory):
    executor.approvals.approve("test_plan", "1.0.0", "cd" * 32, approved_by="admin")
    _refused(executor, make_task(), "the approval pins sha256 cdcdcdcdcdcd")


def test_unknown_recipe(executor: Executor, make_task: TaskFactory):
    _refused(executor, make_task(recipe="exfiltrate"), "not in this node's recipe library")


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"limit": 50}, "limit=50 is above the approved maximum 10"),
        ({"level": "grid", "group_by": ["grid"]}, "level='grid' is not among the approved"),
        ({"surprise": 1}, "unknown parameter 'surprise'"),
    ],
)
def test_parameters_outside_the_approval(
    executor: Executor, make_task: TaskFactory, params: dict[str, Any], words: str
):
    _refused(executor, make_task(params), words)


def test_policy_refusal(executor: Executor, make_task: TaskFactory):
    _refused(executor, make_task({"group_by": ["id_number"]}), "identifier")


def test_tiny_query_set(executor: Executor, make_task: TaskFactory):
    answer = _refused(
        executor,
        make_task({"filters": [["age", "ge", 94]], "group_by": ["sex"]}),
        "query set too small",
    )
    assert answer.partial.query_set_size is None


def test_dataset_not_held(executor: Executor, make_task: TaskFactory):
    _refused(executor, make_task(dataset="secret"), "holds no dataset 'secret'")


def test_engine_failure_gives_a_public_reason_only(
    executor: Executor, make_task: TaskFactory, monkeypatch: pytest.MonkeyPatch
):
    def broken(plan: AggregatePlan) -> Any:
        raise RuntimeError(f"Conversion Error: could not convert {ID_PREFIX}00000001X")

    monkeypatch.setattr(executor, "connector", BrokenConnector(executor.connector, broken))
    answer = executor.execute(make_task())
    check_signed(executor, answer)
    assert answer.partial.status is PartialStatus.FAILED
    assert answer.partial.reason == FAILED_REASON
    last = log_events(executor)[-1]
    assert last["event"] == "task_failed"
    assert last["data"]["error"] == "RuntimeError"
    assert ID_PREFIX not in executor.settings.log_path.read_text()


class BrokenConnector(DuckDBConnector):
    """The real catalogue with a run() that fails like an engine error quoting a value."""

    def __init__(self, inner: DuckDBConnector, run: Any) -> None:
        self._inner, self._broken = inner, run

    def datasets(self):  # type: ignore[override]
        return self._inner.datasets()

    def spec(self, name: str):  # type: ignore[override]
        return self._inner.spec(name)

    def run(self, plan: AggregatePlan):  # type: ignore[override]
        return self._broken(plan)


def test_log_never_holds_identifiers_or_filter_values(executor: Executor, make_task: TaskFactory):
    executor.execute(make_task({"filters": [["id_number", "eq", f"{ID_PREFIX}00000001X"]]}))
    executor.execute(make_task({"group_by": ["sex"], "distinct": "id_number"}))
    text = executor.settings.log_path.read_text()
    assert ID_PREFIX not in text
    assert all(json.loads(line)["signature"] for line in text.splitlines())
