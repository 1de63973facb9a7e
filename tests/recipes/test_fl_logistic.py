"""The fl_logistic training recipe: parameter checks, targets, run config and its code hash
(the FAB sha256), and the app's model code on its own (numpy, no Flower)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from datalab.errors import InvalidParameters
from datalab.federated_model import app_model
from datalab.flower_runtime import fab_sha256
from datalab.wire import CatalogueDataset
from recipes.fl_logistic import FEATURES, NUMERIC, FederatedLogistic
from tests.recipes.conftest import col

RECIPE = FederatedLogistic()


def outcomes(rows: int = 500) -> CatalogueDataset:
    return CatalogueDataset(
        name="verification_outcomes",
        kind="verification_outcomes",
        rows=rows,
        refreshed_at=0.0,
        columns=[
            col("flag_id", "string", "identifier"),
            col("id_number", "string", "identifier"),
            col("grid", "string", "quasi_identifier"),
            *[col(f, "integer", "public") for f in NUMERIC],
            col("flag_type", "string", "public"),
            col("confirmed", "boolean", "sensitive"),
        ],
    )


def catalogue(*rows: int) -> list[tuple[str, CatalogueDataset]]:
    return [(f"district_{i}", outcomes(n)) for i, n in enumerate(rows)]


def test_defaults_validate_and_target_every_district() -> None:
    params = RECIPE.validate({}, catalogue(500, 400, 300))
    assert params["features"] == FEATURES and params["label"] == "confirmed"
    targets = RECIPE.targets(params, catalogue(500, 400, 300))
    assert [t.agency for t in targets] == ["district_0", "district_1", "district_2"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"features": ["id_number"]}, "identifier"),
        ({"label": "flag_id"}, "identifier"),
        ({"features": ["shoe_size"]}, "not in dataset"),
        ({"features": ["age", "age"]}, "twice"),
        ({"features": ["confirmed"]}, "label"),
        ({"features": ["age*confirmed"]}, "label"),
        ({"features": ["flag_type=moved_abroad"]}, "public category list"),
        ({"features": ["age*grid=G1"]}, "public category list"),
        ({"features": ["age*"]}, "names no column"),
        ({"features": []}, "at least one"),
        ({"rounds": 0}, "rounds"),
        ({"rounds": 21}, "rounds"),
        ({"dataset": "elsewhere"}, "no node holds"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(params: dict, message: str) -> None:
    with pytest.raises(InvalidParameters, match=message):
        RECIPE.validate(params, catalogue(500, 400))


def test_one_node_cannot_be_hidden_among_others_so_it_is_refused() -> None:
    params = RECIPE.validate({"min_rows": 450}, catalogue(500, 400))
    with pytest.raises(InvalidParameters, match="at least 2 nodes"):
        RECIPE.targets(params, catalogue(500, 400))


def test_the_run_config_overrides_only_keys_the_app_declares() -> None:
    pyproject = tomllib.loads((RECIPE.app_dir / "pyproject.toml").read_text())
    declared = set(pyproject["tool"]["flwr"]["app"]["config"])
    params = RECIPE.validate({}, catalogue(500, 400))
    pairs = [(t, outcomes()) for t in RECIPE.targets(params, catalogue(500, 400))]
    config = RECIPE.run_config(params, pairs)
    assert set(config) <= declared
    # the hub adds these three
    assert {"job-id", "result-path", "round-timeout"} <= declared
    assert config["min-nodes"] == 2


def test_the_code_hash_is_the_fab_hash_reproducible_and_sensitive_to_any_change(
    tmp_path: Path,
) -> None:
    first = RECIPE.code_sha256()
    assert len(first) == 64 and first == RECIPE.code_sha256()
    copy = tmp_path / "fl_logistic"
    shutil.copytree(RECIPE.app_dir, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert fab_sha256(copy) == first  # same sources elsewhere: same FAB
    model = copy / "fl_logistic_app" / "model.py"
    model.write_text(model.read_text().replace("CLIP = 8.0", "CLIP = 9.0"))
    assert fab_sha256(copy) != first
    # what reviewers read is the whole app
    source = RECIPE.code_source()
    assert "secaggplus_mod" in source and "SecAggPlusWorkflow" in source


def test_the_model_code_learns_a_logistic_signal_and_refuses_identifier_columns(
    tmp_path: Path,
) -> None:
    model = app_model()
    rng = np.random.default_rng(3)
    x = model.design({"a": rng.poisson(5, 4000), "b": rng.random(4000) < 0.4}, ["a", "b"])
    truth = np.array([-1.5, 0.9, 1.2])
    y = (rng.random(4000) < model.predict(truth, x)).astype(float)
    w = model.local_update(np.zeros(3), x, y, "logistic", steps=8, ridge=0.0)
    assert np.allclose(w, truth, atol=0.25)
    one = model.local_update(np.zeros(3), x, y, "logistic", steps=1, ridge=0.0)
    assert model.metrics(w, x, y, "logistic")[1] < model.metrics(one, x, y, "logistic")[1]
    with pytest.raises(model.DataRefused, match="may not be used"):
        model.read_training_data(tmp_path, "d", ["id_number"], "y", allowed=["y"])


def test_central_dp_calibration_and_cost() -> None:
    from recipes.fl_logistic import epsilon_of, noise_multiplier

    for epsilon in (0.1, 1.0, 8.0):
        for releases in (2, 4, 21):
            z = noise_multiplier(epsilon, releases)
            assert epsilon_of(z, releases) == pytest.approx(epsilon, rel=1e-9)
    # more rounds or a smaller epsilon need more noise
    assert noise_multiplier(1.0, 4) > noise_multiplier(1.0, 2) > noise_multiplier(2.0, 2)
    params = RECIPE.validate({"epsilon": 1.0, "rounds": 3}, catalogue(500, 400))
    assert RECIPE.privacy_cost(params) == 1.0
    assert RECIPE.privacy_cost(RECIPE.validate({}, catalogue(500, 400))) is None
    pairs = [(t, outcomes()) for t in RECIPE.targets(params, catalogue(500, 400))]
    config = RECIPE.run_config(params, pairs)
    # the training rounds and the evaluation round each release a noisy sum
    assert config["noise-multiplier"] == pytest.approx(noise_multiplier(1.0, 4))
    assert config["clipping-norm"] == 2.0
    assert (
        RECIPE.run_config(RECIPE.validate({}, catalogue(500, 400)), pairs)["noise-multiplier"]
        == 0.0
    )


def test_the_linear_recipe_is_its_own_fab_and_the_run_config_cannot_change_the_model() -> None:
    """One approval, one app: fl_linear carries fl_logistic's code package in a FAB of its own,
    whose pyproject names the linear ClientApp, so the hashes differ; and no run config key
    chooses the model kind (Flower refuses run-config keys the app does not declare)."""
    from recipes.fl_linear import FederatedLinear

    linear = FederatedLinear()
    assert linear.code_sha256() != RECIPE.code_sha256()
    assert linear.code_sha256() == FederatedLinear().code_sha256()  # reproducible
    assert set(linear.app_files()) == set(RECIPE.app_files())  # same files, own pyproject
    for recipe, client in ((RECIPE, "logistic_app"), (linear, "linear_app")):
        pyproject = tomllib.loads((recipe.app_dir / "pyproject.toml").read_text())
        app = pyproject["tool"]["flwr"]["app"]
        assert app["components"]["clientapp"] == f"fl_logistic_app.client_app:{client}"
        assert "model" not in app["config"]
    assert "fl_linear/pyproject.toml" in linear.code_source()
    params = linear.validate({}, catalogue(500, 400))
    assert params["label"] == "contribution_months_12"
    config = linear.run_config(
        params, [(t, outcomes()) for t in linear.targets(params, catalogue(500, 400))]
    )
    assert "model" not in config
    with pytest.raises(InvalidParameters, match="needs integer or float"):
        linear.validate({"label": "confirmed", "features": ["age"]}, catalogue(500, 400))
    with pytest.raises(InvalidParameters, match="needs boolean"):
        RECIPE.validate({"label": "age", "features": ["has_tenancy"]}, catalogue(500, 400))


def test_the_linear_model_code_recovers_a_linear_fit() -> None:
    model = app_model()
    rng = np.random.default_rng(5)
    x = model.design({"a": rng.poisson(5, 3000)}, ["a"])
    y = x @ np.array([2.0, -0.5]) + rng.normal(0, 0.1, 3000)
    w = model.local_update(np.zeros(2), x, y, "linear", steps=1, ridge=0.0)
    assert np.allclose(w, [2.0, -0.5], atol=0.02)
    r2, mse = model.metrics(w, x, y, "linear")
    assert r2 > 0.7 and mse == pytest.approx(0.01, rel=0.1)  # the noise variance


def test_one_hot_terms_encode_from_the_named_level_and_interact() -> None:
    model = app_model()
    columns = {
        "age": np.array([0.0, 1.0, 3.0]),
        "flag_type": np.array(["separation", "should_cancel", "unheard_of"], dtype=object),
    }
    x = model.design(columns, ["flag_type=separation", "age*flag_type=should_cancel"])
    assert x.tolist() == [[1.0, 1.0, 0.0], [1.0, 0.0, np.log1p(1.0)], [1.0, 0.0, 0.0]]
    assert model.columns_of(["age", "age*flag_type=a", "flag_type=b"]) == (["age"], ["flag_type"])
