"""The PSI relay's routing in a job with several answering agencies (real SQLite database):
the asking node addresses each answering node by agency; an answering node may write only to
the asking node; nothing reaches an agency that is not a party of the job."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from datalab.errors import BadRequest, Forbidden
from datalab.wire import PsiMessage, PsiProgress
from lab_server.db import AuditRow, Database, Job, TaskRow
from lab_server.notify import Notifier
from lab_server.psi_relay import PsiRelay
from lab_server.recipe_book import RecipeBook
from recipes.registry import default_registry

PARTIES = ["public_security", "housing", "hrss", "activity"]


@pytest.fixture
def relay(tmp_path: Path) -> PsiRelay:
    db = Database(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    db.create_all()
    now = time.time()
    with db.write() as session:
        job = Job(
            id="j" * 32,
            analyst="ana",
            recipe="should_cancel_absent",
            version="1.1.0",
            code_sha256="0" * 64,
            params={},
            state="running",
            created_at=now,
            updated_at=now,
        )
        for i, agency in enumerate(PARTIES):
            job.tasks.append(
                TaskRow(
                    id=f"{i}" * 32,
                    agency=agency,
                    dataset="d",
                    state="issued",
                    task={"peers": PARTIES},
                    signature="s",
                    nonce=f"n{i}",
                    issued_at=now,
                    expires_at=now + 60,
                )
            )
        session.add(job)
    return PsiRelay(db, RecipeBook(default_registry()), Notifier())


def _task(agency: str) -> str:
    return f"{PARTIES.index(agency)}" * 32


def test_the_asking_node_reaches_each_answering_node_by_name(relay: PsiRelay) -> None:
    for agency in PARTIES[1:]:
        relay.post("public_security", _task("public_security"), PsiMessage(kind="hello", to=agency))
    for agency in PARTIES[1:]:
        (got,) = relay.take(agency, _task(agency), 0)
        assert got.kind == "hello" and got.sender == "public_security"
    relay.post("hrss", _task("hrss"), PsiMessage(kind="terms", to="public_security"))
    assert [m.sender for m in relay.take("public_security", _task("public_security"), 0)] == [
        "hrss"
    ]


def test_no_message_goes_between_answering_nodes_or_outside_the_job(relay: PsiRelay) -> None:
    with pytest.raises(Forbidden, match="only to the asking"):
        relay.post("housing", _task("housing"), PsiMessage(kind="hello", to="hrss"))
    with pytest.raises(BadRequest, match="not another party"):
        relay.post(
            "public_security", _task("public_security"), PsiMessage(kind="hello", to="health")
        )
    with pytest.raises(BadRequest, match="several parties"):
        relay.post("public_security", _task("public_security"), PsiMessage(kind="hello"))
    assert relay.held() == 0


def test_only_the_asking_node_reports_progress_and_it_is_counts_only(relay: PsiRelay) -> None:
    with pytest.raises(Forbidden, match="asking node"):
        relay.report("hrss", _task("hrss"), PsiProgress(done=1, total=12))
    assert relay.report("public_security", _task("public_security"), PsiProgress(done=3, total=12))
    assert relay.progress("j" * 32) == PsiProgress(done=3, total=12)
    with pytest.raises(ValueError, match="exceed"):
        PsiProgress(done=13, total=12)


def test_the_job_end_leaves_one_audit_entry_of_counts_and_sizes(relay: PsiRelay) -> None:
    relay.post("public_security", _task("public_security"), PsiMessage(kind="hello", to="hrss"))
    relay.post("hrss", _task("hrss"), PsiMessage(kind="setup", body="QUJD", to="public_security"))
    relay.post("hrss", _task("hrss"), PsiMessage(kind="response", to="public_security"))
    db = relay._db
    with db.write() as session:
        session.get(Job, "j" * 32).state = "released"
    assert relay.purge_finished() == 1 and relay.held() == 0
    with db.read() as session:
        rows = session.query(AuditRow).filter(AuditRow.event == "psi_relayed").all()
    (row,) = rows
    data = json.loads(row.data)
    assert data["job_id"] == "j" * 32 and data["messages"] == 3 and data["bytes"] == 4
    assert data["by_sender"] == {
        "hrss": {"messages": 2, "bytes": 4},
        "public_security": {"messages": 1, "bytes": 0},
    }
    assert "QUJD" not in row.data  # sizes, never contents
