"""Rank a district's verification list with a released federated model, inside the district.

The seed's use of federated training: the model the districts trained together (coefficients
only, ``datalab.wire.ModelFile``) comes back to each district, whose admin scores the district's
own flags with it so grid workers visit the likeliest first. The rows, the scores and the ranked
list never leave the node's domain: this runs on the node's machine, reads the node's data
folder and writes a new file there (``datalab node rank``); nothing is sent anywhere.

Scoring uses the app's own model code (``datalab.federated_model``), so each row is encoded
exactly as the nodes encoded their rows in training (same transform, same public category
levels).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import ValidationError

from datalab.errors import BadRequest, NotFound
from datalab.federated_model import APPS_DIR, FederatedModel, app_model
from datalab.manifest import AgencyManifest
from datalab.signing import load_or_create_key
from datalab.wire import ModelFile
from node_agent.log import LocalLog
from node_agent.settings import StateSettings


def load_model(path: Path) -> FederatedModel:
    """The model file an analyst or the hub handed over, checked (a clear error if it is not
    one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NotFound(f"cannot read the model file {path}: {exc.strerror}") from exc
    try:
        file = ModelFile.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise BadRequest(f"{path} is not a model file: {where}: {first['msg']}") from exc
    if not (APPS_DIR / file.app).is_dir():
        raise BadRequest(f"{path}: no Flower app named {file.app!r} in this installation")
    return FederatedModel.from_file(file)


def rank(data_dir: Path, dataset: str, model: FederatedModel, out: Path) -> pa.Table:
    """Score every row of one dataset of the node's folder and write it to ``out`` (.csv or
    .parquet, a new file), best first, with ``rank`` (1 = visit first) and ``score`` columns
    added. Returns the ranked table."""
    if out.suffix not in (".csv", ".parquet"):
        raise BadRequest("write the ranked list to a .csv or .parquet file")
    if out.exists():
        raise BadRequest(f"{out} exists; choose another file")
    manifest = AgencyManifest.load(data_dir)
    spec = manifest.dataset(dataset)
    if spec is None:
        raise NotFound(f"agency {manifest.agency} holds no dataset {dataset!r}")
    numeric, categorical = app_model(model.app).columns_of(model.features)
    missing = [c for c in [*numeric, *categorical] if spec.column(c) is None]
    if missing:
        raise BadRequest(f"the model needs column {missing[0]!r}, which {dataset!r} lacks")
    path = data_dir / spec.path
    table = pacsv.read_csv(path) if spec.format == "csv" else pq.read_table(path)
    scores = model.score(table)
    order = np.argsort(-scores, kind="stable")
    ranked = table.take(pa.array(order))
    ranked = ranked.append_column("score", pa.array(scores[order], pa.float64()))
    ranked = ranked.append_column("rank", pa.array(np.arange(1, len(order) + 1), pa.int64()))
    _write_new(ranked, out)
    return ranked


def log_ranking(
    state: StateSettings, dataset: str, model: FederatedModel, rows: int, out: Path
) -> dict[str, Any]:
    """One entry in the node's own signed log (``node_agent/log.py``) for a ranking: which
    dataset, which model (its job, recipe, FAB hash and the digest of its released
    coefficients), how many rows and where the list went — counts and hashes, never a row, a
    score or an identifier."""
    key = load_or_create_key(state.key_path)
    return LocalLog(state.log_path, key).append(
        "model_ranked",
        {
            "dataset": dataset,
            "rows": rows,
            "out": str(out.resolve()),
            "job_id": model.job_id,
            "recipe": f"{model.provenance.recipe}@{model.provenance.version}",
            "fab_sha256": model.fab_sha256,
            "model_sha256": model.provenance.result_sha256,
        },
    )


def _write_new(table: pa.Table, out: Path) -> None:
    """Write atomically (temp file + rename), readable by the node's user only."""
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o600)
        if out.suffix == ".csv":
            pacsv.write_csv(table, tmp)
        else:
            pq.write_table(table, tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
