"""The past campaign: about the seed's 58.61% confirmed, and learnable enough that ranking by a
logistic model puts clearly more confirmations in the top half."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from synthetic_city import SynthConfig

from .conftest import read

FEATURES = [
    "nights_seen_30d",
    "has_tenancy",
    "contribution_months_12",
    "age",
    "is_migrant",
    "days_since_reg_update",
]


def _outcomes(out: Path) -> pd.DataFrame:
    frames = [
        read(out, f"{d.name}/verification_outcomes.parquet").to_pandas()
        for d in sorted(out.glob("district_*"))
    ]
    return pd.concat(frames, ignore_index=True)


def _design(df: pd.DataFrame) -> np.ndarray:
    x = df[FEATURES].astype(float).to_numpy()
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    kinds = pd.get_dummies(df.flag_type).astype(float).to_numpy()
    inter = np.hstack([x * kinds[:, [k]] for k in range(kinds.shape[1])])
    return np.hstack([kinds, inter])


def _fit(x: np.ndarray, y: np.ndarray, steps: int = 2000, lr: float = 0.5) -> np.ndarray:
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w)))
        w -= lr * (x.T @ (p - y) / len(y) + 1e-3 * w)
    return w


def test_confirmation_rate(out: Path, config: SynthConfig) -> None:
    df = _outcomes(out)
    assert len(df) > 1000
    assert df.flag_id.is_unique
    assert abs(df.confirmed.mean() - config.verification_confirm_rate) < 0.03
    assert set(df.flag_type) == {"missed_registration", "should_cancel", "separation"}


def test_ranking_lifts_yield(out: Path) -> None:
    df = _outcomes(out).sample(frac=1.0, random_state=0).reset_index(drop=True)
    x, y = _design(df), df.confirmed.to_numpy(float)
    half = len(df) // 2
    w = _fit(x[:half], y[:half])
    score = x[half:] @ w
    y_test = y[half:]
    top = y_test[np.argsort(-score)[: len(y_test) // 2]]
    lift = top.mean() / y_test.mean()
    assert 1.3 <= lift < 1.0 / y_test.mean(), lift
