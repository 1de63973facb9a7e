"""``fl_logistic``: federated logistic regression over approved feature columns.

The seed's use: each district holds the outcomes of its past verification campaign (which flags
grid workers confirmed). Pooled, they could teach a model to rank new flags so the likeliest are
visited first; but the outcomes are personal data and stay in each district. This recipe trains
the model across the districts' nodes with Flower: each node takes Newton steps on its own rows,
SecAgg+ sums the masked updates, and the hub sees only the weighted average — the coefficients
and the metrics of the model on all nodes' rows together.

Its code is the Flower app in ``recipes/flower/fl_logistic/`` (see ``recipes/federated.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from datalab.errors import InvalidParameters
from datalab.federated_model import app_model
from datalab.wire import CatalogueDataset
from recipes.contract import (
    DatasetRole,
    OutputColumn,
    ParamSpec,
    RecipeManifest,
    Target,
    validate_params,
)
from recipes.federated import FlowerRecipe, trainable

_terms = app_model("fl_logistic")
factors = _terms.factors
columns_of = _terms.columns_of

#: the numeric and boolean columns of the districts' verification outcomes
NUMERIC = [
    "nights_seen_30d",
    "has_tenancy",
    "contribution_months_12",
    "age",
    "is_migrant",
    "days_since_reg_update",
]
#: the public list of levels of each categorical column a term may one-hot encode. Fixed here,
#: in the approved recipe — never learned from a node's data (a level list read from the data
#: would reveal which rare values a district holds). The first level is the baseline.
CATEGORIES: dict[str, list[str]] = {
    "flag_type": ["missed_registration", "should_cancel", "separation"],
}
#: the default terms: each column, each non-baseline flag type, and each column's interaction
#: with it (the kinds of flag differ in what predicts a confirmation)
FEATURES = [
    *NUMERIC,
    *(f"flag_type={level}" for level in CATEGORIES["flag_type"][1:]),
    *(f"{c}*flag_type={level}" for level in CATEGORIES["flag_type"][1:] for c in NUMERIC),
]
#: fewer nodes than this and SecAgg+ cannot hide one node's update among the others.
MIN_NODES = 2
#: central DP: the delta of the (epsilon, delta) guarantee reported and debited.
DELTA = 1e-6


def noise_multiplier(epsilon: float, releases: int, delta: float = DELTA) -> float:
    """The Gaussian noise multiplier z (noise std = z x clipping norm on the sum of updates)
    that makes ``releases`` noisy aggregates (epsilon, delta)-DP for each node's data.

    Each release is a Gaussian mechanism with sensitivity C and std zC: rho = 1/(2 z^2)
    zero-concentrated DP; ``releases`` of them compose to rho x releases; rho-zCDP implies
    (rho + 2 sqrt(rho ln(1/delta)), delta)-DP (Bun & Steinke 2016, Prop. 1.3). Solved for z.
    """
    log_term = math.log(1 / delta)
    rho = (math.sqrt(log_term + epsilon) - math.sqrt(log_term)) ** 2
    return math.sqrt(releases / (2 * rho))


def epsilon_of(z: float, releases: int, delta: float = DELTA) -> float:
    """The epsilon ``releases`` Gaussian releases with multiplier ``z`` cost (inverse of the
    above; used to check it)."""
    rho = releases / (2 * z * z)
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


class FederatedLogistic(FlowerRecipe):
    app = "fl_logistic"
    run_config_keys: ClassVar[dict[str, str]] = {
        "dataset": "dataset",
        "features": "features",
        "label": "label",
        "rounds": "num-server-rounds",
        "local_steps": "local-steps",
        "ridge": "ridge",
        "epsilon": "epsilon",
        "clipping_norm": "clipping-norm",
        "min_rows": "min-rows",
    }
    #: the column types the label may have
    label_types: ClassVar[tuple[str, ...]] = ("boolean",)
    manifest = RecipeManifest(
        name="fl_logistic",
        version="1.0.0",
        title="Federated logistic regression",
        purpose=(
            "Train a logistic regression across every node holding a dataset with the same "
            "schema (by default the districts' verification outcomes: which flags were "
            "confirmed), so a district can rank its new flags by how likely they are to be "
            "confirmed. Updates are summed under SecAgg+: the hub sees only the aggregate model "
            "and its metrics over all nodes, never one node's update, never a row."
        ),
        datasets=[
            DatasetRole(
                role="training data",
                kind="verification_outcomes",
                required_columns=[*NUMERIC, *CATEGORIES, "confirmed"],
                description="one per node; features and label must not be identifiers",
            )
        ],
        params=[
            ParamSpec(
                name="dataset",
                type="str",
                description="the dataset name every node holds",
                default="verification_outcomes",
            ),
            ParamSpec(
                name="features",
                type="str_list",
                description=(
                    "feature terms: a column (numbers or booleans; never identifiers), a "
                    "one-hot level 'column=level' of a categorical column from the recipe's "
                    "public list (flag_type: missed_registration, should_cancel, separation), "
                    "or a product 'a*b' of those (an interaction)"
                ),
                default=FEATURES,
                max_items=40,
            ),
            ParamSpec(
                name="label",
                type="str",
                description="the column to predict (boolean for logistic)",
                default="confirmed",
            ),
            ParamSpec(
                name="rounds",
                type="int",
                description="training rounds (one more secure round evaluates the final model)",
                default=3,
                minimum=1,
                maximum=20,
            ),
            ParamSpec(
                name="local_steps",
                type="int",
                description="Newton steps each node takes per round",
                default=1,
                minimum=1,
                maximum=10,
            ),
            ParamSpec(
                name="ridge",
                type="float",
                description="L2 penalty per row (not on the intercept)",
                default=0.001,
                minimum=0.0,
                maximum=10.0,
            ),
            ParamSpec(
                name="epsilon",
                type="float",
                description=(
                    "central differential privacy: the epsilon (delta 1e-6) the whole training "
                    "spends from each dataset's budget; updates are clipped and the sum noised "
                    "(Flower's DP wrapper). Unset: no DP"
                ),
                minimum=0.05,
                maximum=20.0,
            ),
            ParamSpec(
                name="clipping_norm",
                type="float",
                description="with epsilon: the L2 norm each node's update is clipped to",
                default=2.0,
                minimum=0.01,
                maximum=100.0,
            ),
            ParamSpec(
                name="min_rows",
                type="int",
                description="a node with fewer rows than this does not take part",
                default=50,
                minimum=10,
                maximum=1_000_000,
            ),
        ],
        output=[
            OutputColumn(name="term", type="str", description="intercept or a feature"),
            OutputColumn(name="coefficient", type="float", description="on the app's transform"),
        ],
    )

    def validate(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]] = ()
    ) -> dict[str, Any]:
        out = validate_params(self.manifest.params, params)
        if not out["features"]:
            raise InvalidParameters("parameter 'features' needs at least one column")
        if len(set(out["features"])) != len(out["features"]):
            raise InvalidParameters("parameter 'features' names a column twice")
        for term in out["features"]:
            for column, level in factors(term):
                if not column:
                    raise InvalidParameters(f"feature term {term!r} names no column")
                if column == out["label"]:
                    raise InvalidParameters("the label cannot also be a feature")
                if level is not None and level not in CATEGORIES.get(column, []):
                    raise InvalidParameters(
                        f"feature term {term!r}: {level!r} is not a level of {column!r} in "
                        f"the recipe's public category list {CATEGORIES.get(column, [])}"
                    )
        if catalogue:
            self._check_columns(out, [d for _, d in catalogue if d.name == out["dataset"]])
        return out

    def _check_columns(self, params: Mapping[str, Any], datasets: list[CatalogueDataset]) -> None:
        if not datasets:
            raise InvalidParameters(f"no node holds a dataset named {params['dataset']!r}")
        for dataset in datasets:
            allowed = trainable(dataset)
            known = {c.name for c in dataset.columns}
            numeric, categorical = columns_of(params["features"])
            for column in [*numeric, *categorical, params["label"]]:
                if column not in known:
                    raise InvalidParameters(f"column {column!r} is not in dataset {dataset.name!r}")
                if column not in allowed:
                    raise InvalidParameters(
                        f"column {column!r} is an identifier: it may not be a feature or label"
                    )
            label = next(c for c in dataset.columns if c.name == params["label"])
            if label.type not in self.label_types:
                raise InvalidParameters(
                    f"the label {params['label']!r} is {label.type}; {self.key} needs "
                    f"{' or '.join(self.label_types)}"
                )

    def run_config_bounds(self, bounds: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """As the base class; and a run without DP carries ``epsilon = 0``, so a bound on
        epsilon also demands DP (below the recipe's smallest epsilon: refused), where the
        hub-side check would let a job without epsilon through."""
        out = super().run_config_bounds(bounds)
        if "epsilon" in out:
            smallest = next(p.minimum for p in self.manifest.params if p.name == "epsilon")
            out["epsilon"]["minimum"] = max(float(out["epsilon"].get("minimum", 0)), smallest)
        return out

    def privacy_cost(self, params: Mapping[str, Any]) -> float | None:
        epsilon = params.get("epsilon")
        return None if epsilon is None else float(epsilon)

    def targets(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]]
    ) -> list[Target]:
        numeric, categorical = columns_of(params["features"])
        wanted = {*numeric, *categorical, params["label"]}
        found = [
            Target(agency=agency, dataset=d.name)
            for agency, d in catalogue
            if d.name == params["dataset"]
            and wanted <= trainable(d)
            and d.rows >= params["min_rows"]
        ]
        if found and len(found) < MIN_NODES:
            raise InvalidParameters(
                f"federated training needs at least {MIN_NODES} nodes holding "
                f"{params['dataset']!r} with enough rows; found {len(found)}"
            )
        return found

    def run_config(
        self, params: Mapping[str, Any], targets: Sequence[tuple[Target, CatalogueDataset]]
    ) -> dict[str, Any]:
        return {
            "dataset": params["dataset"],
            "features": ",".join(params["features"]),
            "label": params["label"],
            "num-server-rounds": int(params["rounds"]),
            "local-steps": int(params["local_steps"]),
            "ridge": float(params["ridge"]),
            "min-rows": int(params["min_rows"]),
            "min-nodes": len(targets),
            # every training round and the evaluation round release a noisy aggregate
            "noise-multiplier": (
                0.0
                if params.get("epsilon") is None
                else noise_multiplier(float(params["epsilon"]), int(params["rounds"]) + 1)
            ),
            # what the noise was solved from: nodes check it against their grants' bounds
            "epsilon": float(params.get("epsilon") or 0.0),
            "clipping-norm": float(params.get("clipping_norm") or 2.0),
            # SecAgg+ weighs each update by its rows, scaled by this bound
            "max-weight": float(max([d.rows for _, d in targets] + [1]) * 2),
        }
