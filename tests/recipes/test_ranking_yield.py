"""The ranking_yield recipe: parameters (the model is hub-filled and bounded), the node-side
scoring and deciles, the hub-side sum, and its code hash pinning the app's encoding."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from datalab.errors import InvalidParameters, JobFailed
from datalab.federated_model import app_model
from datalab.wire import Table
from recipes.ranking_yield import APP, COLUMNS, RankingYield
from tests.recipes.test_fl_logistic import outcomes

RECIPE = RankingYield()
TERMS = ["nights_seen_30d", "flag_type=separation", "has_tenancy*flag_type=separation"]
WEIGHTS = [-0.5, 1.0, 0.3, -0.2]


def params(**extra: object) -> dict[str, object]:
    return {"model": "job1", "terms": TERMS, "weights": WEIGHTS, **extra}


def rows(n: int = 200, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    nights = rng.integers(0, 31, n)
    return pa.table(
        {
            "nights_seen_30d": pa.array(nights, pa.int64()),
            "has_tenancy": pa.array(rng.random(n) < 0.5),
            "flag_type": pa.array(rng.choice(["missed_registration", "separation"], n)),
            # the outcome follows nights seen: a good model puts the confirmed first
            "confirmed": pa.array(nights + rng.normal(0, 5, n) > 15),
        }
    )


def test_the_model_is_checked_as_training_checks_it() -> None:
    out = RECIPE.validate(params(), [("district_1", outcomes())])
    assert out["terms"] == TERMS and out["weights"] == WEIGHTS
    assert out["dataset"] == "verification_outcomes" and out["label"] == "confirmed"
    with pytest.raises(InvalidParameters, match="'model' is required"):
        RECIPE.validate({"terms": TERMS, "weights": WEIGHTS})
    with pytest.raises(InvalidParameters, match="name a released training job"):
        RECIPE.validate({"model": "job1"})
    with pytest.raises(InvalidParameters, match="one weight per term"):
        RECIPE.validate(params(weights=WEIGHTS[:-1]))
    with pytest.raises(InvalidParameters, match="within ±8"):
        RECIPE.validate(params(weights=[0.0, 1e6, 0.0, 0.0]))
    with pytest.raises(InvalidParameters, match="within ±8"):
        RECIPE.validate(params(weights=[0.0, float("nan"), 0.0, 0.0]))
    with pytest.raises(InvalidParameters, match="not a level of 'flag_type'"):
        RECIPE.validate(params(terms=["flag_type=a rare value", "age", "is_migrant"]))
    with pytest.raises(InvalidParameters, match="identifier"):
        RECIPE.validate(
            params(terms=["id_number", "age", "is_migrant"]), [("district_1", outcomes())]
        )
    with pytest.raises(InvalidParameters, match="unknown parameter 'deciles'"):
        RECIPE.validate(params(deciles=100))


def test_targets_are_the_districts_with_enough_rows() -> None:
    p = RECIPE.validate(params())
    found = RECIPE.targets(p, [("a", outcomes(500)), ("b", outcomes(50)), ("c", outcomes(900))])
    assert [t.agency for t in found] == ["a", "c"]
    assert RECIPE.columns(p) == ["nights_seen_30d", "has_tenancy", "flag_type", "confirmed"]


def test_a_node_counts_flags_and_confirmed_per_decile_of_its_own_ranking() -> None:
    data = rows(203)
    p = RECIPE.validate(params(terms=["nights_seen_30d"], weights=[0.0, 1.0]))
    table, n = RECIPE.compute(p, data)
    assert n == 203 and table.columns == COLUMNS
    deciles = np.array(table.rows)
    assert deciles[:, 0].tolist() == list(range(1, 11))
    assert deciles[:, 1].sum() == 203 and set(deciles[:, 1]) <= {20, 21}
    assert deciles[:, 2].sum() == sum(data.column("confirmed").to_pylist())
    # the model ranks by nights seen, which drives the outcome: the top decile beats the bottom
    assert deciles[0, 2] > deciles[-1, 2] + 10
    # the reverse model reverses the order
    reverse, _ = RECIPE.compute(
        RECIPE.validate(params(terms=["nights_seen_30d"], weights=[0.0, -1.0])), data
    )
    assert np.array(reverse.rows)[0, 2] < deciles[0, 2]


def test_scores_are_the_apps_own_encoding() -> None:
    """The same order as the app's predict on the app's design matrix (no copied encoding)."""
    data = rows(100, seed=3)
    p = RECIPE.validate(params())
    model = app_model(APP)
    columns = {
        "nights_seen_30d": model._numpy(data.column("nights_seen_30d")),
        "has_tenancy": model._numpy(data.column("has_tenancy")),
        "flag_type": model._strings(data.column("flag_type")),
    }
    probability = model.predict(np.array(WEIGHTS), model.design(columns, TERMS), "logistic")
    order = np.argsort(-probability, kind="stable")
    confirmed = np.array(data.column("confirmed").to_pylist())[order]
    expected = [int(confirmed[d * 10 : (d + 1) * 10].sum()) for d in range(10)]
    table, _ = RECIPE.compute(p, data)
    assert [r[2] for r in table.rows] == expected


def test_the_hub_adds_the_districts_deciles_and_refuses_impossible_ones() -> None:
    p = RECIPE.validate(params())
    a, _ = RECIPE.compute(p, rows(200, seed=1))
    b, _ = RECIPE.compute(p, rows(300, seed=2))
    combined = RECIPE.combine(p, [a, b])
    assert combined.count_column == "confirmed" and combined.key_columns == ["decile"]
    assert [r[1] for r in combined.table.rows] == [50] * 10
    assert [r[2] for r in combined.table.rows] == [
        x[2] + y[2] for x, y in zip(a.rows, b.rows, strict=True)
    ]
    bad = Table(columns=COLUMNS, rows=[[d, 10, 11] for d in range(1, 11)])
    with pytest.raises(JobFailed, match="impossible"):
        RECIPE.combine(p, [a, bad])
    with pytest.raises(JobFailed, match="not a table of deciles"):
        RECIPE.combine(p, [Table(columns=["decile", "n"], rows=[])])


def test_the_code_hash_pins_the_apps_model_encoding() -> None:
    source = RECIPE.code_source()
    assert "# ---- recipes.ranking_yield" in source
    assert "fl_logistic/fl_logistic_app/model.py" in source and "def transform(" in source
    assert "# ---- recipes.scoring_contract" in source
