"""``ranking_yield``: how well a released flag-ranking model orders each district's list.

The seed's question after training ``fl_logistic``: if grid workers visit flags in the order the
model gives, how many of the confirmed cases do they find after visiting 10 %, 20 %, … of the
list? The outcomes are personal data and stay in each district, so each district node scores its
own past flags with the released model, ranks them within the district, and answers only counts
per score decile (flags, confirmed). The hub adds the deciles up across districts and releases
them through the normal disclosure control; the analyst computes the cumulative yield curve from
that table (``docs/federated.md``).

The model is not a free parameter: the analyst names the training job (``model``) and the hub
fills in that job's released terms and weights (``recipes/scoring_contract.py`` says why: a
crafted weight vector could move one person across a decile boundary between two runs).
Scoring uses the Flower app's own ``model.py`` (its source is part of this recipe's hash), so
each row is encoded exactly as in training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from datalab.errors import JobFailed
from datalab.federated_model import APPS_DIR, app_model
from datalab.wire import CatalogueDataset, Table
from recipes.contract import (
    Combined,
    DatasetRole,
    DisclosurePolicy,
    OutputColumn,
    ParamSpec,
    RecipeManifest,
    Target,
    validate_params,
)
from recipes.federated import trainable
from recipes.fl_logistic import FederatedLogistic
from recipes.scoring_contract import ModelScoringRecipe, check_resolved, split_resolved

APP = "fl_logistic"
_model = app_model(APP)
#: the number of score bins each district's ranked list is cut into.
DECILES = 10
COLUMNS = ["decile", "flags", "confirmed"]


class RankingYield(ModelScoringRecipe):
    model_recipes: ClassVar[tuple[str, ...]] = ("fl_logistic", "fl_linear")
    manifest = RecipeManifest(
        name="ranking_yield",
        version="1.0.0",
        title="Yield of a released ranking model, per score decile",
        purpose=(
            "Measure how well a flag-ranking model the lab released orders each district's "
            "verification list: each district node scores its own past flags with the model, "
            "ranks them within the district and counts flags and confirmed flags per score "
            "decile (1 = the tenth the model puts first). The hub adds the districts' deciles "
            "up. No score, rank or row leaves a district."
        ),
        datasets=[
            DatasetRole(
                role="scored list",
                kind="verification_outcomes",
                required_columns=["confirmed"],
                description="one per district; the model's columns and the label",
            )
        ],
        params=[
            ParamSpec(
                name="model",
                type="str",
                required=True,
                description=(
                    "the job id of a released training job (fl_logistic or fl_linear, e.g. "
                    "lab.train(...).job_id); the lab fills in its terms and weights — a weight "
                    "vector cannot be given directly"
                ),
            ),
            ParamSpec(
                name="dataset",
                type="str",
                description="the dataset every district holds",
                default="verification_outcomes",
            ),
            ParamSpec(
                name="label",
                type="str",
                description="the boolean outcome counted per decile",
                default="confirmed",
            ),
            ParamSpec(
                name="min_rows",
                type="int",
                description="a district with fewer rows than this does not take part",
                default=100,
                minimum=100,
                maximum=1_000_000,
            ),
        ],
        output=[
            OutputColumn(name="decile", type="int", description="1 = highest scores"),
            OutputColumn(name="flags", type="int", description="flags in the decile"),
            OutputColumn(name="confirmed", type="int", description="of which confirmed"),
        ],
        # a decile with few confirmed flags is a small cell like any other
        disclosure=DisclosurePolicy(min_cell=10),
    )

    def code_source(self) -> str:
        """The recipe's modules and the app's ``model.py`` it scores with: an approval pins the
        encoding too."""
        path = APPS_DIR / APP / f"{APP}_app" / "model.py"
        return (
            super().code_source()
            + f"# ---- {path.relative_to(APPS_DIR)}\n{path.read_text(encoding='utf-8')}"
        )

    def validate(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]] = ()
    ) -> dict[str, Any]:
        own, resolved = split_resolved(params)
        out = validate_params(self.manifest.params, own)
        check_resolved(resolved, terms_limit=40, weight_limit=_model.CLIP)
        # the terms are checked exactly as training checks them (public levels, no
        # identifiers, a boolean label), against the catalogue when there is one
        FederatedLogistic().validate(
            {"dataset": out["dataset"], "features": resolved["terms"], "label": out["label"]},
            catalogue,
        )
        out["terms"] = list(resolved["terms"])
        out["weights"] = [float(w) for w in resolved["weights"]]
        return out

    def columns(self, params: Mapping[str, Any]) -> list[str]:
        numeric, categorical = _model.columns_of(params["terms"])
        return [*dict.fromkeys([*numeric, *categorical, params["label"]])]

    def targets(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]]
    ) -> list[Target]:
        wanted = set(self.columns(params))
        return [
            Target(agency=agency, dataset=d.name)
            for agency, d in catalogue
            if d.name == params["dataset"]
            and wanted <= trainable(d)
            and d.rows >= params["min_rows"]
        ]

    def compute(self, params: Mapping[str, Any], rows: pa.Table) -> tuple[Table, int]:
        """Score every row, rank within this node's list (best first, ties in the order read),
        and count flags and confirmed flags per decile of the ranking."""
        n = rows.num_rows
        # the app's own encoding: nulls and types become exactly what training saw
        x = _model.design_of(rows, params["terms"])
        # the linear predictor: the same order as the logistic probability, without its ties
        scores = x @ np.asarray(params["weights"], dtype=float)
        order = np.argsort(-scores, kind="stable")
        label = _model._numpy(rows.column(params["label"])).astype(bool)[order]
        decile = np.arange(n) * DECILES // max(n, 1)
        table = Table(
            columns=COLUMNS,
            rows=[
                [d + 1, int(np.sum(decile == d)), int(np.sum(label[decile == d]))]
                for d in range(DECILES)
            ],
        )
        return table, n

    def combine(self, params: Mapping[str, Any], partials: Sequence[Table]) -> Combined:
        """Add the districts' deciles up (decile k overall = every district's k-th tenth)."""
        if not partials:
            raise JobFailed("no partial results to combine")
        totals = np.zeros((DECILES, 2), dtype=np.int64)
        for partial in partials:
            if partial.columns != COLUMNS or len(partial.rows) != DECILES:
                raise JobFailed("a node's partial is not a table of deciles")
            for decile, flags, confirmed in partial.rows:
                if not (
                    isinstance(decile, int) and 1 <= decile <= DECILES and 0 <= confirmed <= flags
                ):
                    raise JobFailed("a node's partial holds an impossible decile count")
                totals[decile - 1] += (flags, confirmed)
        return Combined(
            table=Table(
                columns=COLUMNS,
                rows=[[d + 1, int(f), int(c)] for d, (f, c) in enumerate(totals)],
            ),
            key_columns=["decile"],
            count_column="confirmed",
        )
