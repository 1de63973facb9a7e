"""``datalab node rank``: a district orders its own flags with a released model, on the test
city's real district data (the model here is fitted with the app's own code on one district's
rows; the end-to-end test ranks with the federally trained model)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from datalab.federated_model import FederatedModel, app_model
from datalab.signing import SigningKey
from datalab.wire import ModelFile, Provenance
from datalab_cli.node_command import add_node_arguments, run_node_command
from node_agent.log import read_entries, verify_log
from node_agent.settings import StateSettings
from recipes.fl_logistic import FEATURES


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="datalab node")
    add_node_arguments(parser)
    return run_node_command(parser.parse_args(argv))


def fitted(rows: Path) -> FederatedModel:
    """A model trained with the app's code on ``rows`` (what a federated run would release)."""
    model = app_model()
    table = pq.read_table(rows).to_pandas()
    numeric, categorical = model.columns_of(FEATURES)
    x = model.design({c: table[c].to_numpy() for c in [*numeric, *categorical]}, FEATURES)
    w = model.local_update(
        np.zeros(x.shape[1]), x, table["confirmed"].to_numpy(float), "logistic", 3, 0.001
    )
    provenance = Provenance(
        job_id="0" * 32,
        recipe="fl_logistic",
        version="1.0.0",
        code_sha256="f" * 64,
        params={"dataset": "verification_outcomes", "features": FEATURES},
        agencies=["district_a", "district_b"],
        min_cell=10,
        suppressed_cells=0,
        released_at=0.0,
        result_sha256="e" * 64,
    )
    return FederatedModel(
        features=list(FEATURES), intercept=w[0], coefficients=w[1:], provenance=provenance
    )


@pytest.fixture(scope="module")
def districts(city: Path) -> list[Path]:
    found = sorted(city.glob("district_*"))
    assert len(found) >= 2
    return found


def test_rank_orders_the_districts_own_flags_confirmed_first(
    districts: list[Path], tmp_path: Path, capsys
) -> None:
    # trained on one district, used inside another: the list it orders was never seen
    model_path = fitted(districts[0] / "verification_outcomes.parquet").save(tmp_path / "m.json")
    assert "id_number" not in model_path.read_text() and "flag_id" not in model_path.read_text()
    target = districts[1]
    out = tmp_path / "ranked.csv"
    argv = ["rank", "--agency", target.name, "--state", str(tmp_path / "state")]
    code = cli([*argv, "--data", str(target), "--model", str(model_path), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    ranked = pacsv.read_csv(out).to_pandas()
    original = pq.read_table(target / "verification_outcomes.parquet").to_pandas()
    assert sorted(ranked.flag_id) == sorted(original.flag_id)  # every flag, once
    assert ranked["rank"].tolist() == list(range(1, len(ranked) + 1))
    assert ranked.score.is_monotonic_decreasing
    top = ranked.confirmed[: len(ranked) // 2].mean()
    overall = ranked.confirmed.mean()
    print(f"{target.name}: top-half confirmed {top:.1%} vs overall {overall:.1%}")
    assert top > overall * 1.15
    assert f"ranked {len(ranked)} rows" in capsys.readouterr().out
    # the node's own signed log says what was ranked, with which model, how many rows
    state = tmp_path / "state"
    settings = StateSettings(agency=target.name, state_dir=state)
    key = SigningKey.from_pem(settings.key_path.read_text(encoding="ascii"))
    assert verify_log(settings.log_path, key.public_key).ok
    entry = list(read_entries(settings.log_path))[-1]
    model = FederatedModel.from_file(
        ModelFile.model_validate_json(model_path.read_text(encoding="utf-8"))
    )
    assert entry["event"] == "model_ranked"
    assert entry["data"] == {
        "dataset": "verification_outcomes",
        "rows": len(ranked),
        "out": str(out.resolve()),
        "job_id": model.job_id,
        "recipe": "fl_logistic@1.0.0",
        "fab_sha256": model.fab_sha256,
        "model_sha256": model.provenance.result_sha256,
    }
    text = settings.log_path.read_text(encoding="utf-8")
    assert not any(str(v) in text for v in original.flag_id.head(50))  # no identifier


def test_rank_refuses_bad_input_and_writes_nothing(
    districts: list[Path], tmp_path: Path, capsys
) -> None:
    good = fitted(districts[0] / "verification_outcomes.parquet").save(tmp_path / "m.json")
    base = ["rank", "--agency", districts[1].name, "--state", str(tmp_path / "state")]
    data = ["--data", str(districts[1])]

    def refused(extra: list[str], message: str) -> None:
        assert cli([*base, *extra]) == 2
        assert message in capsys.readouterr().err

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"app": "../../etc", "kind": "logistic"}), encoding="utf-8")
    refused([*data, "--model", str(broken), "--out", str(tmp_path / "a.csv")], "not a model file")
    refused([*data, "--model", str(tmp_path / "none.json"), "--out", str(tmp_path / "a.csv")], "")
    refused(["--model", str(good), "--out", str(tmp_path / "a.csv")], "--data")
    refused([*data, "--model", str(good), "--out", str(tmp_path / "a.txt")], ".csv or .parquet")
    refused(
        [*data, "--model", str(good), "--dataset", "nope", "--out", str(tmp_path / "a.csv")],
        "no dataset 'nope'",
    )
    existing = tmp_path / "kept.csv"
    existing.write_text("x\n", encoding="utf-8")
    refused([*data, "--model", str(good), "--out", str(existing)], "exists")
    assert existing.read_text(encoding="utf-8") == "x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.json", "kept.csv", "m.json"]
