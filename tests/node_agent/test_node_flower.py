"""The node's Flower side without processes: which app hashes its gate lets through (from the
agency's signed grants) and what its SuperNode is told (no identifier column is trainable)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from datalab.flower_runtime import flower_bin
from datalab.grants import agency_key
from datalab.signing import load_or_create_key
from node_agent.connector import DuckDBConnector
from node_agent.grant_store import ApprovalStore
from node_agent.log import LocalLog
from node_agent.settings import NodeSettings
from node_agent.supernode import SuperNode
from recipes.fl_logistic import FederatedLogistic
from recipes.registry import RecipeRegistry
from tests.node_agent.conftest import AGENCY


@pytest.fixture
def supernode(settings: NodeSettings, connector: DuckDBConnector) -> SuperNode:
    flower = settings.model_copy(update={"flower_superlink": "127.0.0.1:9"})
    agency_key(flower.state)  # the admin's key, pinned beside the node's state
    key = load_or_create_key(flower.key_path)
    return SuperNode(
        flower,
        RecipeRegistry([FederatedLogistic()]),
        ApprovalStore(flower.state, AGENCY),
        connector.datasets(),
        key,
        LocalLog(flower.log_path, key),
    )


def test_the_gate_allows_exactly_the_approved_fab_hashes(supernode: SuperNode) -> None:
    recipe = FederatedLogistic()
    assert supernode.allowed() == {}
    store = supernode.approvals
    store.approve(recipe.name, recipe.version, "0" * 64, approved_by="admin")
    assert supernode.allowed() == {}, "a grant pinning another hash must not let this app run"
    store.approve(recipe.name, recipe.version, recipe.code_sha256(), approved_by="admin")
    assert supernode.allowed() == {recipe.code_sha256(): recipe.key}
    store.revoke(recipe.name, recipe.version, revoked_by="admin", reason="stop")
    assert supernode.allowed() == {}


def test_the_supernode_is_told_its_data_and_the_columns_training_may_read(
    supernode: SuperNode, connector: DuckDBConnector
) -> None:
    config = supernode.node_config()
    assert f'agency="{AGENCY}"' in config
    identifiers = {
        c.name for d in connector.datasets() for c in d.columns if c.klass == "identifier"
    }
    trainable = config.split('trainable-columns="')[1].split('"')[0].split(",")
    assert identifiers and not identifiers & set(trainable)
    command = supernode.supernode_command()
    assert "--insecure" in command and command[5:7] == ["--isolation", "process"]
    assert "--runtime-api-address" in supernode.gate_command()


def test_production_refuses_an_insecure_supernode(settings: NodeSettings) -> None:
    values = settings.model_dump()
    values.update(
        environment="production",
        enrolment_token="x" * 32,
        hub_url="https://hub.example",
        flower_superlink="hub.example:9092",
    )
    with pytest.raises(ValueError, match="TLS with node authentication"):
        NodeSettings(**values)


GATE_CHECK = """
import hashlib, json, sys
from pathlib import Path
import node_agent.flower_gate as gate

state = Path(sys.argv[1])
gate.ALLOWED, gate.REFUSALS = state / "allowed.json", state / "refusals.jsonl"
approved, other = b"approved app bytes", b"other bytes under an approved hash"
gate.ALLOWED.write_text(json.dumps({"hashes": {hashlib.sha256(approved).hexdigest(): "r@1"}}))
installed = []
install = gate.checked(lambda fab, *a, **k: installed.append(fab) or "path")
assert install(approved, skip_prompt=True) == "path"
try:
    install(other, skip_prompt=True)
except gate.NotApproved as exc:
    print("refused:", exc)
print("installed:", len(installed))
"""


def test_the_gate_checks_the_fab_bytes_not_the_hash_the_superlink_declares(
    tmp_path: Path,
) -> None:
    """A hub could declare an approved hash for other bytes: the installer hashes the bytes."""
    python = flower_bin() / "python"
    done = subprocess.run(
        [str(python), "-c", GATE_CHECK, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "installed: 1" in done.stdout
    other = hashlib.sha256(b"other bytes under an approved hash").hexdigest()
    assert f"refused: FAB bytes hash to {other}" in done.stdout
    refusals = [json.loads(line) for line in (tmp_path / "refusals.jsonl").read_text().splitlines()]
    assert [r["fab_hash"] for r in refusals] == [other]


def test_the_gate_is_given_each_grants_bounds_on_the_run_config(supernode: SuperNode) -> None:
    """Bounds on the recipe's parameters, restated on the keys of the run config the gate sees;
    a bound on epsilon also demands DP (a run without it carries epsilon 0)."""
    recipe = FederatedLogistic()
    fab = recipe.code_sha256()
    supernode.approvals.approve(
        recipe.name,
        recipe.version,
        fab,
        bounds={
            "rounds": {"maximum": 2},
            "features": {"choices": ["age", "has_tenancy"]},
            "dataset": {"choices": ["verification_outcomes"]},
            "epsilon": {"maximum": 1.0},
        },
        approved_by="admin",
    )
    doc = supernode.allow_list()
    assert doc["hashes"] == {fab: recipe.key}
    assert doc["bounds"][fab] == {
        "num-server-rounds": {"maximum": 2},
        "features": {"choices": ["age", "has_tenancy"], "list": True},
        "dataset": {"choices": ["verification_outcomes"]},
        "epsilon": {"maximum": 1.0, "minimum": 0.05},
    }
    # an unbounded grant gives the gate no bounds at all
    supernode.approvals.approve(recipe.name, recipe.version, fab, approved_by="admin")
    assert supernode.allow_list()["bounds"] == {}


def test_a_bound_the_run_config_cannot_carry_is_kept_so_the_gate_refuses() -> None:
    bounds = FederatedLogistic().run_config_bounds({"no_such_param": {"maximum": 1}})
    assert bounds == {"param:no_such_param": {"maximum": 1}}


def test_a_refusal_for_bounds_names_the_recipe_and_each_parameter(supernode: SuperNode) -> None:
    record = {
        "run_id": 7,
        "fab_hash": "ab" * 32,
        "recipe": "fl_logistic@1.0.0",
        "problems": ["num-server-rounds=3 is above the approved maximum 2"],
    }
    assert supernode.refusal_reason(record) == (
        f"node {AGENCY} refused app hash {'ab' * 32}: run config outside agency {AGENCY}'s "
        "approval of fl_logistic@1.0.0: num-server-rounds=3 is above the approved maximum 2"
    )
    del record["problems"]
    assert supernode.refusal_reason(record).endswith(f"not approved by agency {AGENCY}")


BOUNDS_CHECK = """
import hashlib, json, sys
from pathlib import Path
from types import SimpleNamespace
import node_agent.flower_gate as gate

state = Path(sys.argv[1])
gate.ALLOWED, gate.REFUSALS = state / "allowed.json", state / "refusals.jsonl"
content = b"approved app bytes"
fab = hashlib.sha256(content).hexdigest()
bounds = {
    "num-server-rounds": {"maximum": 2},
    "features": {"choices": ["age", "has_tenancy"], "list": True},
    "epsilon": {"maximum": 1.0, "minimum": 0.05},
}
gate.ALLOWED.write_text(json.dumps({"hashes": {fab: "fl_logistic@1.0.0"}, "bounds": {fab: bounds}}))
within = {"num-server-rounds": 2, "features": "age,has_tenancy", "epsilon": 0.5}
print("within:", gate.run_config_problems(within, bounds))
no_dp = {**within, "epsilon": 0.0}
print("no dp:", gate.run_config_problems(no_dp, bounds))
print("missing:", gate.run_config_problems({"num-server-rounds": 1}, bounds))
for name, config in (("ok", within), ("out", {**within, "num-server-rounds": 3,
                                              "features": "age,id_number"})):
    gate.OUT_OF_BOUNDS.clear()
    task = SimpleNamespace(run_config=config, run_id=41)
    pull = gate.bounded(lambda: ("msg", task, "run", SimpleNamespace(content=content)))
    assert pull()[0] == "msg"
    installed = []
    install = gate.checked(lambda fab, *a, **k: installed.append(fab) or "path")
    try:
        install(content, skip_prompt=True)
    except gate.NotApproved as exc:
        print(name, "refused:", exc)
    print(name, "installed:", len(installed))
"""


def test_the_gate_refuses_a_run_config_outside_the_grants_bounds(tmp_path: Path) -> None:
    """In Flower's environment: the task's run config is checked against the bounds of the
    grant of the FAB's own bytes before anything is installed; a run outside them installs
    nothing, is answered with an error, and is recorded with each parameter out of bounds."""
    python = flower_bin() / "python"
    done = subprocess.run(
        [str(python), "-c", BOUNDS_CHECK, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = done.stdout
    assert "within: []" in out
    assert "no dp: ['epsilon=0.0 is below the approved minimum 0.05']" in out
    assert "num-server-rounds=1" not in out and "epsilon is bounded by the approval" in out
    assert "ok installed: 1" in out and "ok refused" not in out
    assert "out installed: 0" in out
    assert (
        "out refused: the run config is outside this agency's approval: features='id_number' "
        "is not among the approved ['age', 'has_tenancy']; num-server-rounds=3 is above the "
        "approved maximum 2"
    ) in out
    refusals = [json.loads(line) for line in (tmp_path / "refusals.jsonl").read_text().splitlines()]
    assert len(refusals) == 1
    assert refusals[0]["run_id"] == 41 and refusals[0]["recipe"] == "fl_logistic@1.0.0"
    assert refusals[0]["problems"] == [
        "features='id_number' is not among the approved ['age', 'has_tenancy']",
        "num-server-rounds=3 is above the approved maximum 2",
    ]
