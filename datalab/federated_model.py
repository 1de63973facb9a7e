"""A trained federated model as the analyst gets it: coefficients, metrics per round and
provenance — and the means to score rows with it.

Scoring uses the recipe's own model code (the Flower app's ``model.py``, loaded from the recipes
folder by path), so rows are transformed exactly as the nodes transformed them in training.
Inside a district node the same call ranks that district's verification list
(``node_agent/ranking.py``); the scores never leave the node.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pyarrow as pa

from datalab.wire import ModelFile, Provenance, TrainingRound

APPS_DIR = Path(__file__).resolve().parent.parent / "recipes" / "flower"


@cache
def app_model(app: str = "fl_logistic") -> ModuleType:
    """The ``model`` module of a Flower app under ``recipes/flower`` (numpy only)."""
    path = APPS_DIR / app / f"{app}_app" / "model.py"
    spec = importlib.util.spec_from_file_location(f"datalab_app_{app}_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class FederatedModel:
    features: list[str]
    intercept: float
    coefficients: np.ndarray
    provenance: Provenance
    #: "logistic" or "linear"
    kind: str = "logistic"
    app: str = "fl_logistic"

    @property
    def job_id(self) -> str:
        return self.provenance.job_id

    @property
    def fab_sha256(self) -> str:
        """The approved FAB hash that trained it."""
        return self.provenance.code_sha256

    @property
    def nodes(self) -> list[str]:
        return self.provenance.agencies

    @property
    def epsilon(self) -> float | None:
        return self.provenance.epsilon

    @property
    def rounds(self) -> list[TrainingRound]:
        return self.provenance.rounds

    @property
    def weights(self) -> np.ndarray:
        """``[intercept, coefficients...]``: the vector the app trains."""
        return np.concatenate([[self.intercept], self.coefficients])

    def metrics(self) -> pd.DataFrame:
        """One row per secure round: nodes answering, accuracy and loss of the model entering
        the round over all their rows (the last, evaluation-only row is the final model)."""
        return pd.DataFrame.from_records([r.model_dump() for r in self.rounds])

    def coefficient_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"term": ["intercept", *self.features], "coefficient": self.weights.tolist()}
        )

    def score(self, rows: pa.Table | pd.DataFrame) -> np.ndarray:
        """The model's score per row (probability of the label, for logistic), each row
        encoded exactly as training encoded it (the app's ``design_of``)."""
        model = app_model(self.app)
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(rows)
        return np.asarray(
            model.predict(self.weights, model.design_of(table, self.features), self.kind)
        )

    def to_file(self) -> ModelFile:
        """The model as the file a district's node ranks with (no rows, no identifiers)."""
        return ModelFile(
            app=self.app,
            kind="linear" if self.kind == "linear" else "logistic",
            features=list(self.features),
            weights=self.weights.tolist(),
            provenance=self.provenance,
        )

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_file` as JSON (for ``datalab node rank --model``)."""
        target = Path(path)
        target.write_text(self.to_file().model_dump_json(indent=2), encoding="utf-8")
        return target

    @classmethod
    def from_file(cls, file: ModelFile) -> FederatedModel:
        return cls(
            features=list(file.features),
            intercept=file.weights[0],
            coefficients=np.array(file.weights[1:]),
            provenance=file.provenance,
            kind=file.kind,
            app=file.app,
        )

    def __repr__(self) -> str:
        last = self.rounds[-1] if self.rounds else None
        quality = f", accuracy {last.accuracy:.3f}" if last else ""
        return (
            f"FederatedModel({self.provenance.recipe}, {len(self.features)} features, "
            f"{len(self.nodes)} nodes{quality})"
        )
