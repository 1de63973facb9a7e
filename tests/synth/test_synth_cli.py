"""The ``synth`` subcommand: clear errors with exit code 2, never a half-written folder."""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

import synthetic_city as synth
from datalab.manifest import AgencyManifest
from datalab_cli.synth_command import add_synth_arguments, run_synth_command


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_synth_arguments(parser)
    return run_synth_command(parser.parse_args(argv))


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--people", "-5", "--out", str(tmp_path / "x")]) == 2
    assert "--people" in capsys.readouterr().err
    assert _run(["--people", "100", "--districts", "12", "--out", str(tmp_path / "x")]) == 2
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert _run(["--people", "2000", "--out", str(full)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (full / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "x").exists()


def test_csv_run_and_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "csvcity"
    argv = ["--people", "3000", "--seed", "5", "--format", "csv", "--out", str(out)]
    assert _run(argv) == 0
    captured = capsys.readouterr()
    assert "chunk 1/1" in captured.err
    assert "wrote 3,000 people" in captured.out
    m = AgencyManifest.load(out / "housing")
    ds = m.datasets[0]
    assert ds.format == "csv" and ds.path.endswith(".csv")
    assert pacsv.read_csv(out / "housing" / ds.path).num_rows == ds.rows
    assert (out / "truth" / "flags.parquet").exists()
    assert _run([*argv, "--quiet"]) == 2
    assert _run([*argv, "--quiet", "--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csvcity"]


def test_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(synth, "_chunk", boom)
    with pytest.raises(RuntimeError):
        synth.synthesize(synth.SynthConfig(people=2000), tmp_path / "city")
    assert list(tmp_path.iterdir()) == []
