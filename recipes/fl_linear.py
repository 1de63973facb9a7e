"""``fl_linear``: federated linear regression over approved feature columns.

The code of ``fl_logistic``'s Flower app (``recipes/flower/fl_logistic/fl_logistic_app``: its
model code does both) in a FAB of its own: ``recipes/flower/fl_linear/pyproject.toml`` names the
linear ClientApp, so the model kind is fixed inside the FAB and its hash differs from
``fl_logistic``'s. Each node's Newton step on squared loss is its own least-squares solution,
SecAgg+ averages them, and the metrics are R² and the mean squared error over all answering
nodes. Approving (or revoking) one of the two recipes says nothing about the other.
"""

from __future__ import annotations

from recipes.contract import DatasetRole, OutputColumn, ParamSpec, RecipeManifest
from recipes.fl_logistic import FederatedLogistic

FEATURES = ["nights_seen_30d", "has_tenancy", "age", "is_migrant"]
LABEL = "contribution_months_12"
NUMERIC = ("integer", "float")


def _with_defaults(params: list[ParamSpec]) -> list[ParamSpec]:
    defaults = {"features": FEATURES, "label": LABEL}
    return [
        p.model_copy(update={"default": defaults[p.name]}) if p.name in defaults else p
        for p in params
    ]


class FederatedLinear(FederatedLogistic):
    app = "fl_linear"
    code_from = "fl_logistic"
    label_types = NUMERIC
    manifest = RecipeManifest(
        name="fl_linear",
        version="1.0.0",
        title="Federated linear regression",
        purpose=(
            "Fit a linear regression of a numeric column on approved feature columns across "
            "every node holding a dataset with the same schema (by default: contribution "
            "months in the districts' verification outcomes), with SecAgg+ so the hub sees "
            "only the aggregate fit and its R² and error over all nodes, never a row."
        ),
        datasets=[
            DatasetRole(
                role="training data",
                kind="verification_outcomes",
                required_columns=[*FEATURES, LABEL],
                description="one per node; features and label must not be identifiers",
            )
        ],
        params=_with_defaults(FederatedLogistic.manifest.params),
        output=[
            OutputColumn(name="term", type="str", description="intercept or a feature"),
            OutputColumn(name="coefficient", type="float", description="on the app's transform"),
        ],
    )
