"""What an agency admin reviews before deciding: the recipe's code, its manifest, and its output
on mock data — the same material for the console's review page and ``GET
/approval-requests/{id}/review`` (``datalab approvals show``).

The mock dataset has the agency's schema (from the catalogue: names, types, classes, category
values, area levels) and made-up values — no record of the agency is read or needed. It is run
through the node's own plan compiler (``recipes/plan_sql.py``, on DuckDB), so the admin sees
the shape of what the node would compute and release, before any real row is touched.
"""

from __future__ import annotations

import itertools
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from datalab.errors import BadRequest, DatalabError
from datalab.manifest import ColumnSpec, DatasetSpec
from datalab.wire import ApprovalReview, CatalogueDataset, Table
from lab_server.catalogue import load_catalogue
from lab_server.permissions import Actor, Resource
from lab_server.services import Services
from recipes.contract import Recipe
from recipes.plan_sql import quote_ident, run_plan

MOCK_ROWS = 400
#: result rows of the mock run shown to the admin.
MOCK_SHOWN = 20


def review(hub: Services, actor: Actor, request_id: str) -> ApprovalReview:
    """The review material for ``actor``'s agency (agency admins of an involved agency only)."""
    hub.gate.ensure_allowed(actor, "approve-recipe", Resource(agency=actor.agency))
    request = hub.approvals.get(actor, request_id)
    if actor.agency not in request.agencies:
        hub.gate.ensure_allowed(actor, "approve-recipe", Resource(agency=request.agencies[0]))
        raise BadRequest("this request does not involve your agency")
    recipe = hub.book.get(request.recipe, request.version)
    mock, note = mock_output(hub, recipe, actor.agency or "", request.bounds)
    return ApprovalReview(
        request=request,
        code=recipe.code_source(),
        manifest=recipe.manifest.model_dump(mode="json"),
        mock=mock,
        mock_note=note,
    )


def _column(col: ColumnSpec, rng: np.random.Generator, n: int) -> Any:
    if col.geo_level is not None:
        return [
            f"4401{d:02d}{s:03d}{c:03d}{g:03d}"
            for d, s, c, g in zip(
                rng.integers(3, 5, n),
                rng.integers(1, 3, n),
                rng.integers(1, 3, n),
                rng.integers(1, 4, n),
                strict=True,
            )
        ]
    if col.values:
        return rng.choice(col.values, n)
    if col.type == "integer":
        return rng.integers(0, 90, n)
    if col.type == "float":
        return rng.gamma(2.0, 3000.0, n).round(2)
    if col.type == "boolean":
        return rng.random(n) < 0.3
    if col.type == "date":
        return (pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, n), "D")).date
    return [f"MOCK{i:06d}" for i in range(n)]


def _params(recipe: Recipe, bounds: dict[str, Any], agency: str, catalogue: list) -> Any:
    """The first parameter choice (within the requested bounds) that targets ``agency``."""
    options: dict[str, list[Any]] = {}
    for p in recipe.manifest.params:
        choices = bounds.get(p.name, {}).get("choices") or p.choices
        if p.required and choices:
            options[p.name] = list(choices)
        elif p.name in bounds and "choices" in bounds[p.name]:
            options[p.name] = list(bounds[p.name]["choices"])
    names = list(options)
    for combo in itertools.product(*(options[n] for n in names)):
        try:
            params = recipe.validate(dict(zip(names, combo, strict=True)), catalogue)
        except DatalabError:
            continue
        for target in recipe.targets(params, catalogue):
            if target.agency == agency:
                return params, target.dataset
    return None, None


def mock_output(
    hub: Services, recipe: Recipe, agency: str, bounds: dict[str, Any]
) -> tuple[Table | None, str]:
    """(the first result rows, what they are) or (None, why there are none)."""
    with hub.db.read() as session:
        catalogue: list[tuple[str, CatalogueDataset]] = load_catalogue(session)
    try:
        params, dataset_name = _params(recipe, bounds, agency, catalogue)
    except DatalabError as exc:
        return None, f"no mock output: {exc.message}"
    if params is None:
        return None, f"no mock output: no parameters within the bounds target {agency}'s data"
    dataset = next(d for a, d in catalogue if a == agency and d.name == dataset_name)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({c.name: _column(c, rng, MOCK_ROWS) for c in dataset.columns})
    spec = DatasetSpec(
        name=dataset.name, kind=dataset.kind, path="mock", rows=MOCK_ROWS, columns=dataset.columns
    )
    # the node's own compiler (recipes/plan_sql.py) on an in-memory DuckDB: the same SQL
    connection = duckdb.connect(":memory:", config={"threads": 1})
    try:
        connection.register(spec.name, frame)
        table, _ = run_plan(connection, recipe.plan(params, dataset), spec, quote_ident(spec.name))
    except Exception as exc:  # a mock run that fails must not break the review page
        return None, f"no mock output: {type(exc).__name__}"
    finally:
        connection.close()
    shown = Table(columns=table.columns, rows=table.rows[:MOCK_SHOWN])
    note = (
        f"{recipe.key} with {params} on {MOCK_ROWS} made-up rows of {dataset.name}'s schema "
        f"(first {len(shown.rows)} of {len(table.rows)} result rows; not your data)"
    )
    return shown, note
