"""``datalab audit export`` and the CLIs' answers to bad input, against the live governed lab."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from datalab.client import Lab
from datalab.errors import JobRefused
from datalab_cli.local_lab import ANALYST, AUDITOR, LocalLab
from datalab_cli.main import main


def test_export_filters_to_csv_and_parquet(governed_lab: LocalLab, tmp_path: Path) -> None:
    with Lab(governed_lab.url, governed_lab.tokens[ANALYST]) as analyst, pytest.raises(JobRefused):
        analyst.run("key_groups", group="elderly", level="district")  # never approved here
    base = ["audit", "export", "--hub", governed_lab.url, f"--token={governed_lab.tokens[AUDITOR]}"]
    csv_path, parquet_path = tmp_path / "refused.csv", tmp_path / "all.parquet"
    assert main([*base, "--out", str(csv_path), "--outcome", "refused"]) == 0
    refused = pd.read_csv(csv_path)
    assert len(refused) > 0
    assert set(refused.event) <= {
        "job_refused",
        "task_refused",
        "access_refused",
        "job_rejected",
        "registration_refused",
    }
    assert main([*base, "--out", str(parquet_path)]) == 0
    everything = pd.read_parquet(parquet_path)
    assert list(everything.seq) == list(range(1, len(everything) + 1))
    assert len(everything) > len(refused)
    assert {"job_requested", "task_refused"} <= set(everything.event)
    assert all(isinstance(json.loads(d), dict) for d in everything.data)


@pytest.mark.parametrize(
    ("argv", "status", "words"),
    [
        (["audit", "export", "--out", "x.txt"], 2, "must end in .csv or .parquet"),
        (["audit", "export", "--out", "x.csv", "--outcome", "maybe"], 1, "outcome must be one of"),
        (
            [
                "approvals",
                "request",
                "--recipe",
                "key_groups",
                "--agencies",
                "health",
                "--purpose",
                "x",
                "--bounds",
                "{bad",
            ],
            1,
            "not valid JSON",
        ),
        (
            ["approvals", "approve", "0" * 32, "--agency-key", "/nonexistent"],
            1,
            "no agency_key.pem",
        ),
    ],
)
def test_bad_input_is_one_clear_line(
    governed_lab: LocalLab, capsys, argv: list[str], status: int, words: str
) -> None:
    token = governed_lab.tokens[AUDITOR if argv[0] == "audit" else ANALYST]
    command, rest = argv[0], argv[1:]
    code = (
        main([command, "--hub", governed_lab.url, f"--token={token}", *rest])
        if command == ("approvals")
        else main([command, rest[0], "--hub", governed_lab.url, f"--token={token}", *rest[1:]])
    )
    captured = capsys.readouterr()
    assert code in (status, 2) and words in captured.err + captured.out


def test_without_a_hub_the_commands_say_how(monkeypatch, capsys) -> None:
    monkeypatch.delenv("DATALAB_URL", raising=False)
    monkeypatch.delenv("DATALAB_TOKEN", raising=False)
    assert main(["audit", "verify"]) == 2
    assert "give --hub and --token" in capsys.readouterr().err
