"""Running a model-scoring task inside the node (``recipes/scoring_contract.py``).

The recipe names the columns it reads; the node checks them against its column policy before
reading a row — the same rule its Flower SuperNode applies to training (any column but an
identifier: identifiers are join keys, never features or labels) — then reads them through its
connector, lets the recipe score and count, and checks the minimum query-set size like any
exact aggregate. The rows and the scores stay here; only the recipe's table of counts leaves.
"""

from __future__ import annotations

from typing import Any

from datalab.errors import TaskRefused
from datalab.manifest import ColumnClass, DatasetSpec
from datalab.wire import Table
from node_agent.connector import Connector
from node_agent.policy import check_query_set
from node_agent.settings import NodeSettings
from recipes.plan_sql import PlanError
from recipes.scoring_contract import ModelScoringRecipe


def run_scoring(
    recipe: ModelScoringRecipe,
    params: dict[str, Any],
    spec: DatasetSpec,
    connector: Connector,
    settings: NodeSettings,
) -> tuple[Table, int]:
    """The recipe's partial table over this node's dataset, after the column policy."""
    known = {c.name: c for c in spec.columns}
    columns = recipe.columns(params)
    for name in columns:
        column = known.get(name)
        if column is None:
            raise TaskRefused(f"recipe {recipe.key}: column {name!r} is not in {spec.name!r}")
        if column.klass == ColumnClass.IDENTIFIER:
            raise TaskRefused(
                f"recipe {recipe.key}: column {name!r} is an identifier; a model may not read it"
            )
    try:
        rows = connector.read_local(spec.name, columns)
    except PlanError as exc:
        raise TaskRefused(f"recipe {recipe.key}: {exc}") from None
    table, query_set_size = recipe.compute(params, rows)
    check_query_set(query_set_size, settings)
    return table, query_set_size
