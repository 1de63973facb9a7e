"""The model, in numpy only: feature transform, local Newton steps, metrics, scoring.

Shared by the ClientApp (inside each district node), the ServerApp (at the hub, aggregate only)
and the lab's own code that scores a district's list or trains the same model centrally for the
benchmark — one implementation, so "federated vs centralized" compares data placement, not code.

Features pass through a fixed transform that needs no statistics of the data (a federated
standardisation would cost a round and reveal per-node means): booleans become 0/1, numbers
``log1p(max(x, 0))``. The parameter vector is ``[intercept, one weight per feature]``.

A feature is a *term*: a column (``age``), a one-hot level of a categorical column
(``flag_type=separation``: 1 where the value is that level, else 0), or a product of those
(``age*flag_type=separation``: an interaction). The levels are named in the term itself, so
every node encodes from the same public list the analyst's parameters carry (the recipe checks
them against the list in its manifest); nothing is learned from any node's data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

#: SecAgg+ quantises each value within ±this range; weights are clipped to it before upload.
CLIP = 8.0
MODELS = ("logistic", "linear")


class DataRefused(Exception):
    """The node's data or policy does not allow this training (the message says why)."""


def transform(column: np.ndarray) -> np.ndarray:
    """The fixed per-feature transform: bool → 0/1, numbers → log1p(max(x, 0)); nulls → 0."""
    if column.dtype == bool:
        return column.astype(float)
    values = np.nan_to_num(column.astype(float), nan=0.0)
    return np.log1p(np.maximum(values, 0.0))


def factors(term: str) -> list[tuple[str, str | None]]:
    """A term's factors: ``(column, None)`` for a number or boolean, ``(column, level)`` for
    a one-hot level of a categorical column. ``"age*flag_type=separation"`` →
    ``[("age", None), ("flag_type", "separation")]``."""
    out: list[tuple[str, str | None]] = []
    for factor in term.split("*"):
        column, sep, level = factor.partition("=")
        out.append((column, level if sep else None))
    return out


def columns_of(features: Sequence[str]) -> tuple[list[str], list[str]]:
    """(numeric columns, categorical columns) the terms read, each once, in order of use."""
    numeric: list[str] = []
    categorical: list[str] = []
    for term in features:
        for column, level in factors(term):
            target = numeric if level is None else categorical
            if column not in target:
                target.append(column)
    return numeric, categorical


def term_values(columns: dict[str, np.ndarray], term: str) -> np.ndarray:
    """One term's column of the design matrix (product of its factors; an unknown or null
    category is 0 for every level, i.e. the baseline)."""
    value: np.ndarray | None = None
    for column, level in factors(term):
        factor = (
            transform(columns[column])
            if level is None
            else (np.asarray(columns[column], dtype=object) == level).astype(float)
        )
        value = factor if value is None else value * factor
    assert value is not None
    return value


def design(columns: dict[str, np.ndarray], features: Sequence[str]) -> np.ndarray:
    """The design matrix: an intercept column, then each feature term."""
    n = len(next(iter(columns.values()))) if columns else 0
    return np.column_stack([np.ones(n), *(term_values(columns, f) for f in features)])


def predict(w: np.ndarray, x: np.ndarray, model: str = "logistic") -> np.ndarray:
    """Probability of the label (logistic) or the fitted value (linear)."""
    z = x @ w
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))) if model == "logistic" else z


def metrics(w: np.ndarray, x: np.ndarray, y: np.ndarray, model: str) -> tuple[float, float]:
    """(accuracy, mean loss) for logistic; (R², mean squared error) for linear."""
    p = predict(w, x, model)
    if model == "logistic":
        eps = 1e-12
        loss = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
        return float(np.mean((p >= 0.5) == (y >= 0.5))), float(loss)
    mse = float(np.mean((y - p) ** 2))
    var = float(np.var(y)) or 1.0
    return 1.0 - mse / var, mse


def local_update(
    w: np.ndarray, x: np.ndarray, y: np.ndarray, model: str, steps: int, ridge: float
) -> np.ndarray:
    """``steps`` damped Newton steps from ``w`` on this data (ridge-penalised, not the
    intercept). FedAvg of one Newton step per node from the same global point approximates a
    global Newton step, so a few rounds converge where plain gradient steps would need many."""
    n, d = x.shape
    penalty = ridge * n * np.eye(d)
    penalty[0, 0] = 0.0
    for _ in range(steps):
        p = predict(w, x, model)
        weights = p * (1 - p) if model == "logistic" else np.ones(n)
        grad = x.T @ (p - y) + penalty @ w
        hess = (x * weights[:, None]).T @ x + penalty + 1e-9 * np.eye(d)
        w = w - np.linalg.solve(hess, grad)
    return np.clip(w, -CLIP, CLIP)


def read_training_data(
    data_path: str | Path,
    dataset: str,
    features: Sequence[str],
    label: str,
    allowed: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) from one dataset of the node's folder, reading only the allowed columns.

    ``allowed`` is the node's own list of columns its policy lets a training recipe read (the
    node agent puts it in the SuperNode's config); anything else is refused before a byte of
    data is read.
    """
    numeric, categorical = columns_of(features)
    wanted = [*dict.fromkeys([*numeric, *categorical, label])]
    refused = [c for c in wanted if c not in allowed]
    if refused:
        raise DataRefused(f"column {refused[0]!r} may not be used for training on this node")
    root = Path(data_path)
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    entry = next((d for d in manifest["datasets"] if d["name"] == dataset), None)
    if entry is None:
        raise DataRefused(f"this node holds no dataset {dataset!r}")
    path = root / entry["path"]
    if entry.get("format", "parquet") == "csv":
        table = pacsv.read_csv(path).select(wanted)
    else:
        table = pq.read_table(path, columns=wanted)
    return design_of(table, features), _numpy(table.column(label)).astype(float)


def design_of(table: pa.Table, features: Sequence[str]) -> np.ndarray:
    """The design matrix of ``table``'s rows, each column read as training reads it (nulls,
    types, categorical levels): training, ranking a district's list and scoring for the yield
    curve must encode a row the same way, so they all come through here."""
    numeric, categorical = columns_of(features)
    columns = {c: _numpy(table.column(c)) for c in numeric}
    columns.update({c: _strings(table.column(c)) for c in categorical})
    return design(columns, features) if columns else np.ones((table.num_rows, 1))


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_boolean(column.type):
        return np.asarray(column.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float)


def _strings(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.cast(pa.string()).to_pylist(), dtype=object)
