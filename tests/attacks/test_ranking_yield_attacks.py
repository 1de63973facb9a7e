"""Attack on the yield-curve recipe: difference two releases whose models differ only in where
ONE person falls, to learn that person's verification outcome.

With a free-form weight vector the attack works (shown first, on the recipe's own node-side
computation over a district's file: the test's ground truth, not an analyst's view). The lab
makes it fail by not letting the analyst choose the weights: ``ranking_yield`` takes the id of
a training job the lab released and the hub fills in that model's terms and weights. Every way
of smuggling a crafted vector in through the public client is refused, and nothing runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from datalab.client import Lab
from datalab.errors import InvalidParameters, NotFound
from datalab.federated_model import app_model
from datalab.manifest import AgencyManifest
from datalab_cli.local_lab import LocalLab
from recipes.fl_logistic import NUMERIC
from recipes.ranking_yield import RankingYield

RECIPE = RankingYield()


def _district_rows(city: Path):
    folder = sorted(city.glob("district_*"))[0]
    spec = AgencyManifest.load(folder).dataset("verification_outcomes")
    assert spec is not None
    return pq.read_table(folder / spec.path)


def _crafted_pair(rows) -> tuple[list[float], list[float], int, int]:
    """Two weight vectors over the numeric columns that rank the list identically except that
    person ``t`` (last of the top decile under the first) and ``u`` (first below it) swap."""
    model = app_model("fl_logistic")
    x = model.design({c: model._numpy(rows.column(c)) for c in NUMERIC}, NUMERIC)
    n = len(x)
    top = -(-n // 10)  # the size of decile 1: positions i with i * 10 // n == 0
    rng = np.random.default_rng(5)
    confirmed = rows.column("confirmed").to_numpy(zero_copy_only=False).astype(bool)
    for _ in range(200):
        w = np.concatenate([[0.0], rng.normal(0, 1, len(NUMERIC))])
        order = np.argsort(-(x @ w), kind="stable")
        t, u = order[top - 1], order[top]
        diff = x[u] - x[t]
        if confirmed[t] == confirmed[u] or not diff.any():
            continue  # the attacker tries directions until the swap says something
        gap = (x[t] - x[u]) @ w
        w2 = w + diff * (2 * gap / (diff @ diff) + 1e-9)
        order2 = np.argsort(-(x @ w2), kind="stable")
        if set(order[:top]) ^ set(order2[:top]) == {t, u}:
            return w.tolist(), w2.tolist(), int(t), int(u)
    raise AssertionError("no crafted pair found")  # pragma: no cover


def test_free_weights_would_reveal_one_persons_outcome(city: Path) -> None:
    """The threat is real: two releases differ by exactly one person's outcome."""
    rows = _district_rows(city)
    w1, w2, t, u = _crafted_pair(rows)
    first, _ = RECIPE.compute(
        RECIPE.validate({"model": "x", "terms": NUMERIC, "weights": w1}), rows
    )
    second, _ = RECIPE.compute(
        RECIPE.validate({"model": "x", "terms": NUMERIC, "weights": w2}), rows
    )
    confirmed = rows.column("confirmed").to_pylist()
    assert first.rows[1:] != second.rows[1:] or first.rows[0] != second.rows[0]
    # decile 1 lost t and gained u: the difference is u's outcome minus t's
    assert second.rows[0][2] - first.rows[0][2] == int(confirmed[u]) - int(confirmed[t]) != 0


@pytest.mark.parametrize(
    "extra",
    [
        {"weights": [0.0] + [1.0] * len(NUMERIC)},
        {"terms": NUMERIC, "weights": [0.0] + [1.0] * len(NUMERIC)},
        {"terms": NUMERIC},
    ],
    ids=["weights", "terms+weights", "terms"],
)
def test_an_analyst_cannot_give_the_weights(analyst: Lab, lab: LocalLab, extra: dict) -> None:
    before = len(analyst.jobs())
    with pytest.raises(InvalidParameters, match="cannot be given: the lab fills in"):
        analyst.run("ranking_yield", model="any", progress=False, **extra)
    assert len(analyst.jobs()) == before  # nothing written, nothing sent to a node


def test_the_model_must_be_a_training_job_the_lab_released(analyst: Lab) -> None:
    before = len(analyst.jobs())
    with pytest.raises(NotFound, match="no job"):
        analyst.run("ranking_yield", model="0" * 32, progress=False)
    # a released job of another kind (its table is not a model) is refused by name
    counts = analyst.run("key_groups", group="elderly", level="district", progress=False)
    other = counts.attrs["provenance"].job_id
    with pytest.raises(InvalidParameters, match="scores with a model released by fl_logistic"):
        analyst.run("ranking_yield", model=other, progress=False)
    for bad in ({}, {"model": ["a", "b"]}, {"model": ""}):
        with pytest.raises(InvalidParameters, match="must name a released training job"):
            analyst.run("ranking_yield", progress=False, **bad)
    assert len(analyst.jobs()) == before + 1  # only the key_groups job
