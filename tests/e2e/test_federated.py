"""Federated training end to end: a real SuperLink and four real SuperNodes (one per district
node), the fl_logistic Flower app under SecAgg+, one district refusing, one dying mid-round."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from datalab.client import Lab
from datalab.errors import InvalidParameters
from datalab_cli.local_lab import ANALYST, AUDITOR, LocalLab
from datalab_cli.node_command import main as node_cli
from recipes.registry import default_registry
from tests.support.federated import Scenario

pytestmark = pytest.mark.slow


def audit(lab: LocalLab) -> list:
    with Lab(lab.url, lab.tokens[AUDITOR]) as auditor:
        assert auditor.verify_audit()["ok"]
        return auditor.audit_entries()


def test_training_completes_with_a_sane_model(federated_scenario: Scenario, city) -> None:
    model = federated_scenario.model
    print(f"federated training (1 round + evaluation): {federated_scenario.seconds:.0f} s")
    assert model.fab_sha256 == federated_scenario.fab_sha256
    assert model.provenance.run_id
    assert [r.round for r in model.rounds] == [1, 2]
    assert model.rounds[-1].evaluation_only and not model.rounds[0].evaluation_only
    assert np.all(np.isfinite(model.weights)) and np.all(np.abs(model.weights) < 8)
    # round 1 measures the all-zero start (predicts "confirmed" for all: the base rate);
    # the final model must do clearly better, with a lower loss
    first, last = model.rounds[0], model.rounds[-1]
    assert first.loss == pytest.approx(math.log(2), abs=1e-3)
    assert last.loss < first.loss - 0.03
    assert last.accuracy > first.accuracy + 0.05
    # the released model scored here (the test plays the districts) on the rows of the districts
    # that answered the last round agrees with the accuracy SecAgg+ aggregated from them
    frames = [
        pq.read_table(city / a / "verification_outcomes.parquet").to_pandas()
        for a in federated_scenario.kept
    ]
    rows = np.concatenate([(model.score(f) >= 0.5) == f["confirmed"].to_numpy() for f in frames])
    assert rows.mean() == pytest.approx(last.accuracy, abs=0.005)


def test_a_node_refuses_an_unapproved_app_and_the_hub_logs_it(
    federated_scenario: Scenario, flower_lab: LocalLab
) -> None:
    refusing = federated_scenario.refusing
    # one approval, one app: the refusing district still grants fl_linear, a FAB of its own
    linear = default_registry().get("fl_linear", "1.0.0").code_sha256()
    assert linear != federated_scenario.fab_sha256
    assert federated_scenario.refusing_allowed == {linear: "fl_linear@1.0.0"}
    # (the attack tests push another app through the same lab: only this app's refusals count)
    refusals = [
        e
        for e in audit(flower_lab)
        if e.event == "flower_app_refused" and e.data["fab_sha256"] == federated_scenario.fab_sha256
    ]
    mine = [e for e in refusals if e.actor == refusing]
    assert mine, f"no refusal from {refusing} in the audit log: {refusals}"
    entry = mine[0]
    assert entry.data["fab_sha256"] == federated_scenario.fab_sha256
    assert entry.data["job_id"] == federated_scenario.model.job_id
    assert entry.data["reason"] == (
        f"node {refusing} refused app hash {federated_scenario.fab_sha256}: "
        f"not approved by agency {refusing}"
    )
    # the refusing node took no part: the model says so, and no district that approved refused
    assert federated_scenario.model.provenance.missing_agencies == [refusing]
    assert {e.actor for e in refusals} == {refusing}
    # and its node never started the app
    assert not list((flower_lab.node_state(refusing) / "flower" / "home").glob("apps/*"))


def test_a_node_dying_mid_training_costs_the_round_not_the_run(
    federated_scenario: Scenario,
) -> None:
    rounds = federated_scenario.model.rounds
    live = len(federated_scenario.kept)
    # every round aggregated at least the live districts; the last (after the death) only them
    assert all(r.nodes >= live for r in rounds)
    assert rounds[-1].nodes == live
    assert all(r.nodes <= live + 1 for r in rounds)  # the refusing district never counted


def test_the_audit_log_tells_the_training_story(
    federated_scenario: Scenario, flower_lab: LocalLab
) -> None:
    job = federated_scenario.model.job_id
    events = [e for e in audit(flower_lab) if e.data.get("job_id") == job]
    names = [e.event for e in events]
    assert names[0] == "job_requested"
    assert "training_started" in names
    assert names.count("training_round") == 2
    assert names[-1] == "model_released"
    released = events[-1].data
    assert released["fab_sha256"] == federated_scenario.fab_sha256
    assert released["rounds"] == 1
    # no task went to any node: training runs through the SuperNodes only
    assert "task_issued" not in names


def test_training_parameters_are_checked_before_anything_runs(flower_lab: LocalLab) -> None:
    with Lab(flower_lab.url, flower_lab.tokens[ANALYST]) as analyst:
        before = len(analyst.jobs())
        with pytest.raises(InvalidParameters, match="identifier"):
            analyst.train("fl_logistic", features=["id_number", "age"], progress=False)
        with pytest.raises(InvalidParameters, match="rounds"):
            analyst.train("fl_logistic", rounds=0, progress=False)
        assert len(analyst.jobs()) == before


def test_each_district_ranks_its_own_list_with_the_released_model(
    federated_scenario: Scenario, flower_lab: LocalLab, tmp_path
) -> None:
    """The seed's use: the released model file goes to each district, whose admin orders the
    district's flags with it (``datalab node rank``, in the district's domain). On every
    district — including the one that refused to train — the top half holds clearly more
    confirmations than the list as a whole."""
    model_file = federated_scenario.model.save(tmp_path / "model.json")
    assert "id_number" not in model_file.read_text(encoding="utf-8")
    for agency in flower_lab.flower_agencies():
        out = tmp_path / f"{agency}.parquet"
        code = node_cli(
            [
                *["rank", "--agency", agency, "--state", str(flower_lab.node_state(agency))],
                *["--data", str(flower_lab.city_dir / agency), "--model", str(model_file)],
                *["--out", str(out)],
            ]
        )
        assert code == 0
        ranked = pq.read_table(out).to_pandas()
        top = ranked.confirmed[: len(ranked) // 2].mean()
        assert top > ranked.confirmed.mean() * 1.15, (agency, top, ranked.confirmed.mean())
