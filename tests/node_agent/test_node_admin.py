"""The agency admin's side: approvals via the CLI, the local log's verification, and settings
that refuse development secrets in production."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from datalab.signing import load_or_create_key
from datalab_cli.node_command import add_node_arguments, run_node_command
from node_agent.grant_store import ApprovalStore
from node_agent.log import LocalLog, verify_log
from node_agent.settings import NodeSettings
from recipes.registry import RecipeRegistry
from tests.node_agent.conftest import AGENCY, PlanRecipe


def cli(argv: list[str], registry: RecipeRegistry | None = None) -> int:
    parser = argparse.ArgumentParser(prog="datalab node")
    add_node_arguments(parser)
    return run_node_command(parser.parse_args(argv), registry=registry)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_approve_list_revoke(state: Path, registry: RecipeRegistry, recipe: PlanRecipe, capsys):
    base = ["--agency", AGENCY, "--state", str(state)]
    bounds = '{"limit": {"maximum": 8}}'
    code = cli(
        ["approve", *base, "--recipe", "test_plan@1.0.0", "--bounds", bounds, "--by", "wang"],
        registry,
    )
    assert code == 0
    assert "approved test_plan@1.0.0" in capsys.readouterr().out
    (approval,) = ApprovalStore(state, AGENCY).list()
    assert approval.code_sha256 == recipe.code_sha256()
    assert approval.bounds == {"limit": {"maximum": 8}}
    assert approval.approved_by == "wang"

    assert cli(["approvals", *base], registry) == 0
    out = capsys.readouterr().out
    assert "test_plan@1.0.0" in out and "wang" in out
    assert cli(["approvals", *base, "--json"], registry) == 0
    assert json.loads(capsys.readouterr().out)[0]["recipe"] == "test_plan"

    assert cli(["revoke", *base, "--recipe", "test_plan@1.0.0"], registry) == 0
    assert ApprovalStore(state, AGENCY).list() == []
    assert cli(["revoke", *base, "--recipe", "test_plan@1.0.0"], registry) == 2
    assert "not approved" in capsys.readouterr().err


def test_approve_with_explicit_hash_warns_when_it_differs(
    state: Path, registry: RecipeRegistry, capsys
):
    code = cli(
        [
            "approve",
            "--agency",
            AGENCY,
            "--state",
            str(state),
            "--recipe",
            "test_plan@1.0.0",
            "--sha256",
            "ab" * 32,
        ],
        registry,
    )
    assert code == 0
    assert "warning" in capsys.readouterr().err
    assert ApprovalStore(state, AGENCY).list()[0].code_sha256 == "ab" * 32


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["approve", "--recipe", "test_plan"], "NAME@VERSION"),
        (["approve", "--recipe", "nope@1.0.0"], "no recipe nope@1.0.0"),
        (["approve", "--recipe", "test_plan@1.0.0", "--bounds", "{bad"], "not valid JSON"),
        (["approve", "--recipe", "test_plan@1.0.0", "--bounds", '{"limit": 3}'], "bounds"),
        (["approve", "--recipe", "test_plan@1.0.0", "--sha256", "xyz"], "64"),
        (["log"], "no local log"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    argv: list[str], message: str, state: Path, registry: RecipeRegistry, capsys
):
    code = cli([*argv, "--agency", AGENCY, "--state", str(state)], registry)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_run_without_data_exits_2(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DATALAB_NODE_DATA_DIR", raising=False)
    assert cli(["--agency", AGENCY, "--state", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err
    assert cli(["run", "--agency", "bad name!", "--data", str(tmp_path)]) == 2
    assert "--agency" in capsys.readouterr().err
    assert cli(["run", "--agency", AGENCY, "--data", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_both_command_forms_parse():
    parser = argparse.ArgumentParser()
    add_node_arguments(parser)
    short = parser.parse_args(["--agency", "a", "--data", "d", "--hub", "http://h"])
    long = parser.parse_args(["run", "--agency", "a", "--data", "d", "--hub", "http://h"])
    for args in (short, long):
        assert (args.agency, args.data, args.hub) == ("a", "d", "http://h")
    assert short.node_command is None and long.node_command == "run"
    approve = parser.parse_args(["approve", "--agency", "a", "--recipe", "r@1"])
    assert (approve.node_command, approve.agency, approve.recipe) == ("approve", "a", "r@1")


def test_log_verification_detects_an_edit(state: Path, capsys):
    key = load_or_create_key(state / "node_key.pem")
    log = LocalLog(state / "node-log.jsonl", key)
    for i in range(4):
        log.append("task_done", {"task_id": f"t{i}", "rows": i})
    assert verify_log(log.path, key.public_key).ok
    assert cli(["log", "--agency", AGENCY, "--state", str(state), "--verify"]) == 0
    assert "ok: 4 entries" in capsys.readouterr().out
    assert cli(["log", "--agency", AGENCY, "--state", str(state), "--tail", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2

    lines = log.path.read_text().splitlines()
    lines[2] = lines[2].replace('"rows":2', '"rows":20')
    log.path.write_text("\n".join(lines) + "\n")
    result = verify_log(log.path, key.public_key)
    assert (result.ok, result.first_bad) == (False, 3)
    assert "altered" in result.message
    assert cli(["log", "--agency", AGENCY, "--state", str(state), "--verify"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_log_verification_detects_removal_and_forgery(state: Path):
    key = load_or_create_key(state / "node_key.pem")
    log = LocalLog(state / "node-log.jsonl", key)
    for i in range(3):
        log.append("task_received", {"task_id": f"t{i}"})
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    assert verify_log(log.path, key.public_key).first_bad == 2
    # a forger who recomputes the chain still cannot sign as the node
    forged = LocalLog(state / "forged.jsonl", load_or_create_key(state / "other.pem"))
    forged.append("task_received", {"task_id": "t0"})
    result = verify_log(forged.path, key.public_key)
    assert not result.ok and "signature" in result.message


def test_log_continues_its_chain_after_a_restart(state: Path):
    key = load_or_create_key(state / "node_key.pem")
    LocalLog(state / "node-log.jsonl", key).append("registered", {"hub_url": "x"})
    entry = LocalLog(state / "node-log.jsonl", key).append("task_received", {"task_id": "t"})
    assert entry["seq"] == 2
    assert verify_log(state / "node-log.jsonl", key.public_key).ok


def test_two_writers_of_the_log_keep_one_chain(state: Path):
    """The running agent and an admin command (``rank``) append to the same log: each append
    picks up the other's entries, so the chain never forks."""
    key = load_or_create_key(state / "node_key.pem")
    agent = LocalLog(state / "node-log.jsonl", key)
    agent.append("registered", {"hub_url": "x"})
    admin = LocalLog(state / "node-log.jsonl", key)
    admin.append("model_ranked", {"rows": 3})
    agent.append("task_received", {"task_id": "t"})
    admin.append("model_ranked", {"rows": 4})
    result = verify_log(agent.path, key.public_key)
    assert result.ok and result.entries == 4, result.message


def test_approvals_of_another_agency_are_not_loaded(state: Path):
    ApprovalStore(state, "health").approve("r", "1", "ab" * 32, approved_by="x")
    with pytest.raises(ValueError, match="health"):
        ApprovalStore(state, AGENCY).list()


def test_production_refuses_development_defaults(tmp_path: Path, monkeypatch):
    for name in ("ENROLMENT_TOKEN", "HUB_PUBLIC_KEY"):
        monkeypatch.delenv(f"DATALAB_NODE_{name}", raising=False)
    base = {"agency": AGENCY, "data_dir": tmp_path, "environment": "production"}
    with pytest.raises(ValidationError, match="development enrolment token"):
        NodeSettings(**base, hub_url="https://hub")
    with pytest.raises(ValidationError, match="public key"):
        NodeSettings(**base, hub_url="https://hub", enrolment_token="real")
    with pytest.raises(ValidationError, match="https"):
        NodeSettings(**base, hub_url="http://hub", enrolment_token="real", hub_public_key="ab" * 32)
    ok = NodeSettings(
        **base, hub_url="https://hub/", enrolment_token="real", hub_public_key="AB" * 32
    )
    assert ok.hub_url == "https://hub" and ok.hub_public_key == "ab" * 32
    assert ok.state == Path("var") / f"node-{AGENCY}"


def test_settings_come_from_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DATALAB_NODE_AGENCY", "health")
    monkeypatch.setenv("DATALAB_NODE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATALAB_NODE_MIN_CELL", "25")
    monkeypatch.setenv("DATALAB_NODE_FINEST_LEVEL", "community")
    settings = NodeSettings()
    assert (settings.agency, settings.min_cell, settings.finest_level) == (
        "health",
        25,
        "community",
    )


def test_hub_key_trust_on_first_use_then_pinned(settings: NodeSettings):
    from node_agent.trust import HubKeyMismatch, check_offered, pin_first_use, trusted_key

    dev = settings.model_copy(update={"hub_public_key": None})
    assert trusted_key(dev) is None
    pinned = pin_first_use(dev, "AB" * 32)
    assert trusted_key(dev) == pinned == "ab" * 32
    check_offered(pinned, "ab" * 32, "registration")
    with pytest.raises(HubKeyMismatch, match="differs from the pinned key"):
        check_offered(pinned, "cd" * 32, "registration")
    # a configured key wins and is pinned
    assert trusted_key(settings) == settings.hub_public_key
    assert dev.hub_key_path.read_text().strip() == settings.hub_public_key
