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
from node_agent.approvals import ApprovalStore
from node_agent.connector import DuckDBConnector
from node_agent.flower import SuperNode
from node_agent.log import LocalLog
from node_agent.settings import NodeSettings
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
