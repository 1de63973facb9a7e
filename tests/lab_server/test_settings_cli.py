"""Settings validation and the hub's commands (``datalab server`` / ``datalab users``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from datalab_cli.hub_command import (
    add_server_arguments,
    add_users_arguments,
    create_user,
    run_server,
    run_users_command,
)
from lab_server.db import Database
from lab_server.settings import HubSettings
from lab_server.users import by_token


def test_production_refuses_the_development_enrolment_token(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="development default"):
        HubSettings(environment="production", state_dir=tmp_path)
    with pytest.raises(ValidationError, match="at least 16"):
        HubSettings(environment="production", state_dir=tmp_path, enrolment_token="short")
    ok = HubSettings(environment="production", state_dir=tmp_path, enrolment_token="x" * 32)
    assert ok.environment == "production"


def test_settings_read_the_environment_and_default_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATALAB_HUB_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DATALAB_HUB_NODE_TIMEOUT_S", "5")
    settings = HubSettings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'hub.db'}"
    assert settings.node_timeout_s == 5
    assert settings.port == 8700 and settings.max_body_bytes == 1024 * 1024
    assert settings.hub_key_path == tmp_path / "hub_key.pem"


def _users(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_users_arguments(parser)
    return parser.parse_args(argv)


def test_users_add_prints_a_working_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(tmp_path)
    assert run_users_command(_users(["add", "ana", "--role", "analyst", "--state", state])) == 0
    token = capsys.readouterr().out.strip()
    db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    with db.read() as session:
        actor = by_token(session, token)
    db.dispose()
    assert actor is not None and actor.name == "ana"
    assert run_users_command(_users(["list", "--state", state])) == 0
    listing = capsys.readouterr().out
    assert "ana\tanalyst\t-" in listing and token not in listing


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["add", "adm", "--role", "agency_admin"], "needs an agency"),
        (["add", "bad name!", "--role", "analyst"], "name must be"),
    ],
)
def test_users_add_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run_users_command(_users([*argv, "--state", str(tmp_path)])) == 2
    assert message in capsys.readouterr().err


def test_users_add_twice_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create_user(HubSettings(state_dir=tmp_path), "ana", "analyst")
    assert (
        run_users_command(_users(["add", "ana", "--role", "analyst", "--state", str(tmp_path)]))
        == 2
    )
    assert "already exists" in capsys.readouterr().err


def test_server_refuses_a_production_start_with_a_dev_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATALAB_HUB_ENVIRONMENT", "production")
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    assert run_server(parser.parse_args(["--state", str(tmp_path), "--port", "0"])) == 2
    assert "development default" in capsys.readouterr().err
