"""``dp_aggregate``: the federated aggregate with differential privacy (OpenDP noise).

Where each step happens, and why:

* **contribution bounding on the node** — only the node sees rows: it keeps at most
  ``max_rows_per_person`` rows per identifier (before filtering, so which rows are kept does
  not depend on the query) and clamps each summed value to ``[lower, upper]`` (NaN and
  infinities are clamped too). That bounds what one person can change: ``k`` in every count
  vector, ``k · max(|lower|, |upper|)`` in every sum vector (L1).
* **noise at the hub** — once, on the combined totals, in this reviewed ``combine`` that every
  agency approved by hash. Noising each node's partial instead would add one noise draw per
  node to every total (√nodes times the error) for the same epsilon, and the budget that pays
  for it lives at the hub, where the debit and the release are one ledger. The cost: the hub
  sees the exact partials before noise — as it does for every recipe (DESIGN: the hub is
  trusted with partial aggregates); DP here protects the released results against analysts,
  not the partials against the hub.
* **a fixed key domain** — the released groups are the product of ``domain`` (given, or the
  catalogue's declared values of categorical and boolean columns), never "the groups the data
  happened to have": a group that exists only because one person is in it would otherwise
  leak through its mere presence. Missing groups are released as noisy zeros.

The budget (``lab_server/budget.py``) is charged ``epsilon`` per target dataset when the job is
created; a mean spends half on the count and half on the sum.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from datalab.errors import InvalidParameters, JobFailed, TaskRefused
from datalab.manifest import ColumnClass
from datalab.wire import CatalogueDataset, Table
from recipes.aggregate import FederatedAggregate, _check_against, partial_keys
from recipes.contract import (
    AggregatePlan,
    Combined,
    DatasetRole,
    DisclosurePolicy,
    Filter,
    GroupKey,
    Measure,
    OutputColumn,
    ParamSpec,
    RecipeManifest,
    add_partials,
    validate_params,
)
from recipes.noise import noisy_counts, noisy_sums

#: the most groups one DP release may have (each is a noisy number).
MAX_GROUPS = 5000
LEVELS = ["city", "district", "street", "community", "grid"]


class DPAggregate(FederatedAggregate):
    manifest = RecipeManifest(
        name="dp_aggregate",
        version="1.0.0",
        title="Federated aggregate with differential privacy",
        purpose=(
            "Noisy counts, bounded sums or bounded means over every agency's dataset of one "
            "kind. Nodes bound each person's rows and clamp values to declared bounds; the hub "
            "adds OpenDP Laplace noise once to the totals over a fixed set of groups, and "
            "charges epsilon to the analyst's privacy budget on every dataset before running."
        ),
        datasets=[
            DatasetRole(
                role="district_population",
                kind="district_population",
                description="each district's population register (one node per district)",
            ),
        ],
        params=[
            ParamSpec(name="kind", type="str", required=True, description="the dataset kind"),
            ParamSpec(
                name="measure",
                type="str",
                default="count",
                choices=["count", "sum", "mean"],
                description="noisy count, or noisy bounded sum / mean of 'column'",
            ),
            ParamSpec(name="column", type="str", description="the numeric column (sum, mean)"),
            ParamSpec(
                name="lower",
                type="float",
                minimum=-1e9,
                maximum=1e9,
                description="each value is clamped up to this (sum, mean)",
            ),
            ParamSpec(
                name="upper",
                type="float",
                minimum=-1e9,
                maximum=1e9,
                description="each value is clamped down to this (sum, mean)",
            ),
            ParamSpec(
                name="group_by",
                type="str_list",
                default=[],
                max_items=2,
                description="columns to group by (categorical, boolean, or with 'domain')",
            ),
            ParamSpec(
                name="domain",
                type="value_lists",
                max_items=2,
                description=(
                    "per group_by column, the values to release (default: the catalogue's "
                    "declared values; needed for area codes)"
                ),
            ),
            ParamSpec(
                name="level",
                type="level",
                default="district",
                choices=LEVELS,
                description="the level area-code group keys are rolled up to",
            ),
            ParamSpec(
                name="filters",
                type="filter_list",
                default=[],
                max_items=5,
                description="row filters, each [column, op, value]",
            ),
            ParamSpec(
                name="epsilon",
                type="float",
                required=True,
                minimum=0.01,
                maximum=10.0,
                description="the privacy loss this query spends from each dataset's budget",
            ),
            ParamSpec(
                name="max_rows_per_person",
                type="int",
                default=1,
                minimum=1,
                maximum=10,
                description="rows one person may contribute (the node drops the rest)",
            ),
        ],
        output=[
            OutputColumn(name="<group keys>", type="any", description="one column per key"),
            OutputColumn(name="n", type="integer", description="noisy count (≥ 0)"),
            OutputColumn(name="sum", type="float", description="noisy bounded sum"),
            OutputColumn(name="mean", type="float", description="noisy sum / noisy count"),
        ],
        # Noise protects every released number, so complementary suppression, dominance and
        # query-set rules are off by default (agencies may still switch some on; see
        # docs/privacy.md). Small noisy cells are still withheld: post-processing costs nothing.
        disclosure=DisclosurePolicy(
            min_cell=10,
            complementary=False,
            min_query_set=0,
            min_complement=0,
            dominance_n=0,
            p_percent=0.0,
        ),
    )

    # ------------------------------------------------------------------ hub: validation

    def validate(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]] = ()
    ) -> dict[str, Any]:
        out = validate_params(self.manifest.params, params)
        out["group_by"] = list(out["group_by"] or [])
        out["filters"] = [list(f) for f in out["filters"] or []]
        measure = out["measure"]
        if measure in ("sum", "mean"):
            if not out["column"]:
                raise InvalidParameters(f"parameter 'column' is required for measure {measure!r}")
            if out["lower"] is None or out["upper"] is None:
                raise InvalidParameters(
                    "parameters 'lower' and 'upper' are required for a DP sum or mean: each "
                    "value is clamped to them, which bounds what one person can change"
                )
            if out["lower"] > out["upper"]:
                raise InvalidParameters("parameter 'lower' must be ≤ 'upper'")
        elif out["column"] or out["lower"] is not None or out["upper"] is not None:
            raise InvalidParameters("'column', 'lower' and 'upper' are for measure sum or mean")
        if len(set(out["group_by"])) != len(out["group_by"]):
            raise InvalidParameters("parameter 'group_by' names a column twice")
        if catalogue:
            datasets = [d for _, d in catalogue if d.kind == out["kind"]]
            if not datasets:
                raise InvalidParameters(f"no dataset of kind {out['kind']!r} in the catalogue")
            for dataset in datasets:
                _check_against(out, dataset)
            if out["domain"] is None:
                out["domain"] = [_declared(name, datasets[0]) for name in out["group_by"]]
        domain = out["domain"] or []
        if len(domain) != len(out["group_by"]):
            raise InvalidParameters("parameter 'domain' needs one list of values per group_by")
        size = 1
        for values in domain:
            size *= len(values)
        if size > MAX_GROUPS:
            raise InvalidParameters(f"the domain has {size} groups; at most {MAX_GROUPS}")
        return out

    def privacy_cost(self, params: Mapping[str, Any]) -> float | None:
        return float(params["epsilon"])

    # ------------------------------------------------------------------ node: plan

    def plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> AggregatePlan:
        columns = {c.name: c for c in dataset.columns}
        person = next((c.name for c in dataset.columns if c.klass == ColumnClass.IDENTIFIER), None)
        if person is None:
            raise TaskRefused(
                f"dataset {dataset.name!r} has no identifier column to bound rows per person"
            )
        group_by: list[GroupKey] = []
        for name in params.get("group_by") or []:
            spec = columns.get(name)
            if spec is not None and spec.geo_level is not None:
                level = params.get("level") or "district"
                group_by.append(GroupKey(column=name, level=level, alias=level))
            else:
                group_by.append(GroupKey(column=name))
        measures = [Measure(fn="count", alias="n")]
        if params.get("measure") in ("sum", "mean"):
            measures.append(
                Measure(
                    fn="sum",
                    column=params["column"],
                    alias="sum",
                    lower=float(params["lower"]),
                    upper=float(params["upper"]),
                )
            )
        return AggregatePlan(
            dataset=dataset.name,
            group_by=group_by,
            filters=[
                Filter(column=f[0], op=f[1], value=f[2] if len(f) > 2 else None)
                for f in params.get("filters") or []
            ],
            measures=measures,
            max_rows_per_person=int(params.get("max_rows_per_person") or 1),
            person_column=person,
        )

    # ------------------------------------------------------------------ hub: combine + noise

    def combine(self, params: Mapping[str, Any], partials: Sequence[Table]) -> Combined:
        """Exact totals over the fixed domain, then OpenDP noise; nothing exact leaves here."""
        if not partials:
            raise JobFailed("no partial results to combine")
        measure = params.get("measure") or "count"
        level = params.get("level") or "district"
        keys, geo = partial_keys(params, partials, level)
        wanted = ["n", "sum"] if measure in ("sum", "mean") else ["n"]
        exact = {key: acc for key, acc in add_partials(partials, keys, wanted)}
        groups = [tuple(g) for g in itertools.product(*(params.get("domain") or []))]
        counts = [int(exact.get(g, [0, 0])[0]) for g in groups]
        if any(c < 0 for c in counts):
            raise JobFailed("a partial result holds a negative count")
        k = int(params.get("max_rows_per_person") or 1)
        epsilon = float(params["epsilon"])
        eps_count = epsilon if measure == "count" else epsilon / 2
        n = [max(v, 0) for v in noisy_counts(counts, k, eps_count)]
        rows: list[list[Any]] = [[*g, c] for g, c in zip(groups, n, strict=True)]
        if measure in ("sum", "mean"):
            lower, upper = float(params["lower"]), float(params["upper"])
            sensitivity = k * max(abs(lower), abs(upper))
            sums = [float(exact.get(g, [0, 0.0])[1]) for g in groups]
            noisy = noisy_sums(sums, sensitivity, epsilon / 2) if sensitivity > 0 else sums
            for row, total, count in zip(rows, noisy, n, strict=True):
                if measure == "sum":
                    row.append(total)
                else:  # post-processing: a mean outside the bounds is impossible, clamp it
                    row.append(min(max(total / max(count, 1), lower), upper))
        value_col = [] if measure == "count" else [measure]
        return Combined(
            table=Table(columns=[*keys, "n", *value_col], rows=rows),
            key_columns=keys,
            count_column="n",
            geo_column=geo,
            geo_level=level if geo is not None else None,
        )


def _declared(name: str, dataset: CatalogueDataset) -> list[Any]:
    spec = next(c for c in dataset.columns if c.name == name)
    if spec.values:
        return list(spec.values)
    if spec.type == "boolean":
        return [False, True]
    raise InvalidParameters(
        f"column {name!r} has no declared values: a DP release needs its groups fixed in "
        "advance; give them as 'domain' (e.g. the area codes to release)"
    )
