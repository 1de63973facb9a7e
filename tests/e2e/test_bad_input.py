"""Bad input to the live lab gets a 4xx whose message says what is wrong, and writes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from datalab.client import Lab
from datalab.errors import InvalidParameters, NotFound, Unauthorized
from datalab_cli.local_lab import ANALYST, LocalLab


def _job_count(lab: LocalLab) -> int:
    from datalab_cli.local_lab import AUDITOR

    headers = {"Authorization": f"Bearer {lab.tokens[AUDITOR]}"}
    return len(httpx.get(f"{lab.url}/api/v1/jobs", headers=headers, timeout=10).json())


@pytest.mark.parametrize(
    ("recipe", "params", "error", "says"),
    [
        ("no_such_recipe", {}, NotFound, "no_such_recipe"),
        ("aggregate", {"kind": "no_such_kind"}, InvalidParameters, "no_such_kind"),
        (
            "aggregate",
            {"kind": "district_population", "group_by": ["colour"]},
            InvalidParameters,
            "colour",
        ),
        (
            "aggregate",
            {"kind": "district_population", "measure": "median"},
            InvalidParameters,
            "measure",
        ),
        ("key_groups", {"group": "elderly", "level": 3}, InvalidParameters, "level"),
        ("key_groups", {"group": "elderly", "level": "building"}, InvalidParameters, "level"),
        ("key_groups", {"group": "unicorns"}, InvalidParameters, "group"),
        ("key_groups", {"group": "elderly", "colour": "red"}, InvalidParameters, "colour"),
        (
            "aggregate",
            {"kind": "district_population", "group_by": ["a", "b", "c", "d"]},
            InvalidParameters,
            "group_by",
        ),
    ],
)
def test_bad_job_requests_are_refused_with_a_clear_message(
    analyst: Lab, lab: LocalLab, recipe: str, params: dict, error: type, says: str
) -> None:
    before = _job_count(lab)
    with pytest.raises(error) as err:
        analyst.run(recipe, progress=False, **params)
    assert says in err.value.message
    assert _job_count(lab) == before


def test_malformed_json_oversized_body_and_bad_token(lab: LocalLab) -> None:
    headers = {"Authorization": f"Bearer {lab.tokens[ANALYST]}", "Content-Type": "application/json"}
    before = _job_count(lab)
    r = httpx.post(f"{lab.url}/api/v1/jobs", content=b'{"recipe": "aggr', headers=headers)
    assert r.status_code == 400
    assert "JSON" in r.json()["error"]["message"]
    big = b'{"recipe": "aggregate", "params": {"kind": "' + b"x" * 2_000_000 + b'"}}'
    r = httpx.post(f"{lab.url}/api/v1/jobs", content=big, headers=headers)
    assert r.status_code == 413
    assert "limit" in r.json()["error"]["message"].lower() or "large" in r.text.lower()
    r = httpx.post(
        f"{lab.url}/api/v1/jobs",
        json={"recipe": "aggregate"},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert r.status_code == 401
    r = httpx.get(f"{lab.url}/api/v1/catalogue")
    assert r.status_code == 401
    assert _job_count(lab) == before
    with pytest.raises(Unauthorized), Lab(lab.url, "wrong") as stranger:
        stranger.catalogue()


def _datalab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "datalab_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_reports_bad_input_and_exits_non_zero(tmp_path: Path) -> None:
    r = _datalab(
        "node",
        "run",
        "--agency",
        "health",
        "--data",
        str(tmp_path / "missing"),
        "--hub",
        "http://127.0.0.1:9",
        "--state",
        str(tmp_path / "state"),
    )
    assert r.returncode != 0
    assert "missing" in r.stderr or "manifest" in r.stderr
    r = _datalab("users", "add", "someone", "--role", "emperor", "--state", str(tmp_path))
    assert r.returncode != 0
    assert "role" in r.stderr
    r = _datalab("synth", "--people", "-5", "--out", str(tmp_path / "c"))
    assert r.returncode == 2
    assert "people" in r.stderr
    r = _datalab("no-such-command")
    assert r.returncode == 2
