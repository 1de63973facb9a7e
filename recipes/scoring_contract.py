"""The contract of a recipe that scores a node's rows with a model the lab released.

The fourth kind of ``Recipe`` (after aggregate plans, PSI matching and Flower training): each
node scores its own rows with a trained model's terms and weights *inside the node*, and
answers with an aggregate of what the scores did (a table of counts), which the hub combines
and protects like any aggregate. The node cannot express "score with a model" as an
``AggregatePlan``, so such a recipe reads the rows it needs itself (``columns``, checked against
the node's column policy first) and computes its partial table (``compute``).

The model is never the analyst's to write. A free-form weight vector is a query language: it
can be crafted to move ONE person across a cut-off between two runs, and the difference of the
two releases is that person's outcome. So the analyst names a training job whose model the lab
released (parameter ``model``), and the hub fills in ``RESOLVED`` — that job's terms and
weights — before the job is written (``lab_server/released_models.py``); a request that carries
them itself is refused. Nodes receive them in the hub-signed task and check their bounds again.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import pyarrow as pa

from datalab.errors import InvalidParameters
from datalab.wire import Table
from recipes.contract import AggregatePlan, Recipe

#: the parameters the hub fills in from the released model (never the analyst).
RESOLVED = ("terms", "weights")


class ModelScoringRecipe(Recipe):
    """Base of recipes that score a node's rows with a released model and answer counts."""

    #: no AggregatePlan to audit: the protection against differencing is that the model is one
    #: the lab released (the analyst cannot choose the weights), plus disclosure control.
    query_audited: ClassVar[bool] = False
    #: the training recipes whose released models this recipe may score with.
    model_recipes: ClassVar[tuple[str, ...]]

    @abstractmethod
    def columns(self, params: Mapping[str, Any]) -> list[str]:
        """The columns of the node's dataset the scoring reads (never identifiers)."""

    @abstractmethod
    def compute(self, params: Mapping[str, Any], rows: pa.Table) -> tuple[Table, int]:
        """The node's partial table from its rows, and the query-set size (rows used)."""

    def plan(self, params: Mapping[str, Any], dataset: Any) -> AggregatePlan:
        raise InvalidParameters(f"{self.key} scores rows with a model: nodes compute it locally")


def check_resolved(params: Mapping[str, Any], terms_limit: int, weight_limit: float) -> None:
    """The hub-filled model, bounded: a list of term names and one finite weight per term plus
    the intercept, each within ±``weight_limit``."""
    terms, weights = params.get("terms"), params.get("weights")
    if terms is None or weights is None:
        raise InvalidParameters(
            "the model's terms and weights are missing: name a released training job in "
            "parameter 'model' and the lab fills them in"
        )
    if (
        not isinstance(terms, list)
        or not terms
        or len(terms) > terms_limit
        or not all(isinstance(t, str) and t for t in terms)
    ):
        raise InvalidParameters(f"the model's terms must be 1 to {terms_limit} names")
    if not isinstance(weights, list) or len(weights) != len(terms) + 1:
        raise InvalidParameters("the model needs one weight per term plus the intercept")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, int | float) or not abs(w) <= weight_limit:
            raise InvalidParameters(
                f"the model's weights must be finite numbers within ±{weight_limit:g}"
            )


def split_resolved(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the analyst's parameters, the hub-filled ones)."""
    own = {k: v for k, v in params.items() if k not in RESOLVED}
    return own, {k: params[k] for k in RESOLVED if k in params}
