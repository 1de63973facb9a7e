"""``aggregate``: one grouped count, sum or mean over every node holding a dataset kind.

The workhorse recipe: several agencies hold datasets of the same kind (each district's
``district_population``), and an analyst wants one city-wide table from them — e.g. people by
``age_band`` per street, or mean ``monthly_income`` by ``is_migrant`` per district. Each node
computes counts and sums for its own rows; the hub adds them up. A mean is always combined as
total sum / total count, never as a mean of the nodes' means (which would weight a small
district like a large one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from datalab.errors import InvalidParameters, JobFailed
from datalab.geography import CODE_LENGTH, LEVELS, is_finer
from datalab.manifest import ColumnClass, ColumnSpec
from datalab.wire import CatalogueDataset, Table
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
    Recipe,
    RecipeManifest,
    Target,
    add_partials,
    validate_params,
)

#: The most declared values a non-area quasi-identifier may have and still be a group key (the
#: node agents apply the same rule; checking it here gives the analyst the message up front).
MAX_CATEGORIES = 20

#: Filter operations allowed on area-code columns (ordering comparisons would slice areas).
AREA_FILTER_OPS = ("eq", "ne", "in", "not_in", "is_null", "not_null")

NUMERIC_TYPES = ("integer", "float", "boolean")


class FederatedAggregate(Recipe):
    manifest = RecipeManifest(
        name="aggregate",
        version="1.0.0",
        title="Federated aggregate over one dataset kind",
        purpose=(
            "Count rows, or sum or average a numeric column, over every agency's dataset of one "
            "kind (e.g. every district's population register), grouped by up to three columns, "
            "with area codes rolled up to a chosen level. Nodes return counts and sums; the hub "
            "adds them up (means are total sum / total count) and suppresses small cells."
        ),
        # The kinds held by several nodes in the synthetic city, declared so an agency admin
        # sees what this recipe is for; 'kind' may name any other kind, which the holding
        # agencies must approve like any other use.
        datasets=[
            DatasetRole(
                role="district_population",
                kind="district_population",
                description="each district's population register (one node per district)",
            ),
            DatasetRole(
                role="verification_outcomes",
                kind="verification_outcomes",
                description="each district's outcomes of grid workers' verification visits",
            ),
        ],
        params=[
            ParamSpec(
                name="kind",
                type="str",
                required=True,
                description="the dataset kind to aggregate, e.g. district_population",
            ),
            ParamSpec(
                name="measure",
                type="str",
                default="count",
                choices=["count", "sum", "mean"],
                description="count rows, or sum / mean of 'column'",
            ),
            ParamSpec(
                name="column",
                type="str",
                description="the numeric column to sum or average (sum and mean only)",
            ),
            ParamSpec(
                name="group_by",
                type="str_list",
                default=[],
                max_items=3,
                description="columns to group by; area-code columns are rolled up to 'level'",
            ),
            ParamSpec(
                name="level",
                type="level",
                default="district",
                choices=["city", "district", "street", "community", "grid"],
                description="the level area-code group keys are rolled up to",
            ),
            ParamSpec(
                name="filters",
                type="filter_list",
                default=[],
                max_items=5,
                description="row filters, each [column, op, value]",
            ),
        ],
        output=[
            OutputColumn(
                name="<group keys>",
                type="any",
                description="one column per group key; an area key is named after its level",
            ),
            OutputColumn(name="n", type="integer", description="rows in the group"),
            OutputColumn(name="sum", type="float", description="sum of 'column' (measure=sum)"),
            OutputColumn(
                name="mean", type="float", description="total sum / total n (measure=mean)"
            ),
        ],
        disclosure=DisclosurePolicy(min_cell=10, complementary=True, allow_missing_nodes=False),
    )

    # ------------------------------------------------------------------ hub: validation

    def validate(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]] = ()
    ) -> dict[str, Any]:
        """Manifest checks, then checks against every dataset of the kind in the catalogue.

        An empty catalogue means "not known here" (e.g. a node re-validating a task): then only
        the checks that need no catalogue run, and the node's own policy does the rest.
        """
        out = validate_params(self.manifest.params, params)
        out["group_by"] = list(out["group_by"] or [])
        out["filters"] = [list(f) for f in out["filters"] or []]
        measure = out["measure"]
        if measure in ("sum", "mean") and not out["column"]:
            raise InvalidParameters(f"parameter 'column' is required for measure {measure!r}")
        if measure == "count" and out["column"]:
            raise InvalidParameters(
                "parameter 'column' is only used with measure 'sum' or 'mean', not 'count'"
            )
        if len(set(out["group_by"])) != len(out["group_by"]):
            raise InvalidParameters("parameter 'group_by' names a column twice")
        if catalogue:
            datasets = [d for _, d in catalogue if d.kind == out["kind"]]
            if not datasets:
                kinds = ", ".join(sorted({d.kind for _, d in catalogue}))
                raise InvalidParameters(
                    f"no dataset of kind {out['kind']!r} in the catalogue; kinds held: {kinds}"
                )
            for dataset in datasets:
                _check_against(out, dataset)
        return out

    # ------------------------------------------------------------------ hub: targets

    def targets(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]]
    ) -> list[Target]:
        """Every (agency, dataset) of the requested kind, in catalogue order."""
        return [
            Target(agency=agency, dataset=d.name)
            for agency, d in catalogue
            if d.kind == params["kind"]
        ]

    # ------------------------------------------------------------------ node: plan

    def plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> AggregatePlan:
        """Counts (and sums) per group for one dataset: additive, so the hub can merge them."""
        columns = {c.name: c for c in dataset.columns}
        group_by: list[GroupKey] = []
        for name in params.get("group_by") or []:
            spec = columns.get(name)
            if spec is not None and spec.geo_level is not None:
                level = params.get("level") or "district"
                group_by.append(GroupKey(column=name, level=level, alias=level))
            else:
                group_by.append(GroupKey(column=name))
        filters = [
            Filter(column=f[0], op=f[1], value=f[2] if len(f) > 2 else None)
            for f in params.get("filters") or []
        ]
        measures = [Measure(fn="count", alias="n")]
        if params.get("measure") in ("sum", "mean"):
            measures.append(Measure(fn="sum", column=params["column"], alias="sum"))
            # the two largest contributions, for the hub's dominance rules (never released)
            measures.append(Measure(fn="top2_abs", column=params["column"], alias="top2"))
        return AggregatePlan(
            dataset=dataset.name, group_by=group_by, filters=filters, measures=measures
        )

    # ------------------------------------------------------------------ hub: combine

    def combine(self, params: Mapping[str, Any], partials: Sequence[Table]) -> Combined:
        """Outer-join the partials on their keys, adding up ``n`` and ``sum``.

        A group missing from a node's partial simply had no rows there. Key names are read
        from the partials: a group-by column that holds area codes comes back named after the
        level (the plan's alias), so its presence tells us which key is geographic.
        """
        if not partials:
            raise JobFailed("no partial results to combine")
        measure = params.get("measure") or "count"
        level = params.get("level") or "district"
        keys, geo = partial_keys(params, partials, level)
        wanted = ["n", "sum"] if measure in ("sum", "mean") else ["n"]
        tops = _top_two(partials, keys) if measure in ("sum", "mean") else None
        contributions: list[tuple[float, float, float]] = []
        out_rows: list[list[Any]] = []
        for key, acc in add_partials(partials, keys, wanted):
            if acc[0] < 0 or not float(acc[0]).is_integer():
                raise JobFailed("a partial result holds a count that is not a whole number ≥ 0")
            n = int(acc[0])
            if tops is not None:
                top = tops.get(key, [])
                contributions.append((float(acc[1]), *[*top, 0.0, 0.0][:2]))
            row: list[Any] = [*key, n]
            if measure == "sum":
                row.append(float(acc[1]))
            elif measure == "mean":
                row.append(float(acc[1]) / n if n else None)
            out_rows.append(row)
        value_col = [] if measure == "count" else [measure]
        return Combined(
            table=Table(columns=[*keys, "n", *value_col], rows=out_rows),
            key_columns=keys,
            count_column="n",
            geo_column=geo,
            geo_level=level if geo is not None else None,
            contributions=contributions if tops is not None else None,
        )


def _top_two(partials: Sequence[Table], keys: Sequence[str]) -> dict[tuple[Any, ...], list[float]]:
    """Per group, the two largest absolute contributions over every node's partial."""
    out: dict[tuple[Any, ...], list[float]] = {}
    for table in partials:
        if "top2" not in table.columns:
            raise JobFailed("a partial result lacks the column 'top2'")
        key_at = [table.columns.index(k) for k in keys]
        at = table.columns.index("top2")
        for row in table.rows:
            values = row[at] if isinstance(row[at], list) else []
            key = tuple(row[i] for i in key_at)
            merged = out.get(key, []) + [float(v) for v in values]
            out[key] = sorted(merged, reverse=True)[:2]
    return out


def partial_keys(
    params: Mapping[str, Any], partials: Sequence[Table], level: str
) -> tuple[list[str], str | None]:
    """The key columns of the partials, in group-by order, and which of them is the area key.

    An area column comes back named after the level, which may be its own name (grid at grid
    level): that key is still the area key, for suppression up the hierarchy.
    """
    first = partials[0].columns
    keys: list[str] = []
    geo: str | None = None
    for name in params.get("group_by") or []:
        if level in first and geo is None and (name == level or name not in first):
            keys.append(level)
            geo = level
        elif name in first:
            keys.append(name)
        else:
            raise JobFailed(f"a partial result lacks the group key {name!r}")
    return keys, geo


# ---------------------------------------------------------------------- catalogue checks


def _check_against(params: dict[str, Any], dataset: CatalogueDataset) -> None:
    """Raise InvalidParameters naming the first thing ``params`` cannot do on ``dataset``."""
    kind = params["kind"]
    columns = {c.name: c for c in dataset.columns}

    def column(name: str) -> ColumnSpec:
        spec = columns.get(name)
        if spec is None:
            valid = ", ".join(c.name for c in dataset.columns)
            raise InvalidParameters(
                f"unknown column {name!r} in datasets of kind {kind!r}; valid columns: {valid}"
            )
        return spec

    level = params["level"]
    area_keys = 0
    for name in params["group_by"]:
        spec = column(name)
        _refuse_identifier(spec)
        if spec.klass == ColumnClass.SENSITIVE:
            raise InvalidParameters(
                f"column {name!r} is sensitive: it can only be aggregated (sum or mean), "
                "never grouped by"
            )
        if spec.geo_level is not None:
            area_keys += 1
            if area_keys > 1:
                raise InvalidParameters("group by at most one area-code column")
            if is_finer(level, spec.geo_level):
                raise InvalidParameters(
                    f"column {name!r} holds {spec.geo_level} codes: it cannot be grouped at "
                    f"{level} level"
                )
            if level != name and level in params["group_by"]:
                raise InvalidParameters(
                    f"column {level!r} clashes with the name of the rolled-up area key"
                )
        elif spec.klass == ColumnClass.QUASI_IDENTIFIER and (
            spec.values is None or len(spec.values) > MAX_CATEGORIES
        ):
            raise InvalidParameters(
                f"column {name!r} is a quasi-identifier that is not categorical (at most "
                f"{MAX_CATEGORIES} declared values): it cannot be grouped by; group by a "
                "banded column (e.g. age_band) instead"
            )
    for f in params["filters"]:
        name, op, value = f[0], f[1], f[2]
        spec = column(name)
        if spec.klass == ColumnClass.IDENTIFIER:
            raise InvalidParameters(
                f"column {name!r} is an identifier: it can never be grouped by or output, "
                "nor filtered on"
            )
        if spec.klass == ColumnClass.SENSITIVE:
            raise InvalidParameters(
                f"column {name!r} is sensitive: it can only be aggregated, never filtered on"
            )
        _check_filter_value(spec, op, value)
    if params["measure"] in ("sum", "mean"):
        spec = column(params["column"])
        if spec.klass == ColumnClass.IDENTIFIER:
            raise InvalidParameters(
                f"column {spec.name!r} is an identifier: it can never be summed or output"
            )
        if spec.type not in NUMERIC_TYPES:
            raise InvalidParameters(
                f"column {spec.name!r} is of type {spec.type}: {params['measure']} needs a "
                "numeric column (integer, float or boolean)"
            )


def _refuse_identifier(spec: ColumnSpec) -> None:
    if spec.klass == ColumnClass.IDENTIFIER:
        raise InvalidParameters(
            f"column {spec.name!r} is an identifier: it can never be grouped by or output"
        )


def _check_filter_value(spec: ColumnSpec, op: str, value: Any) -> None:
    """Catch filters that can only match nothing (or that the node would refuse) up front."""
    if op in ("is_null", "not_null"):
        return
    values = value if op in ("in", "not_in") else [value]
    if spec.geo_level is not None:
        if op not in AREA_FILTER_OPS:
            raise InvalidParameters(
                f"area column {spec.name!r} may only be filtered with "
                f"{', '.join(AREA_FILTER_OPS)}, not {op}"
            )
        lengths = set(CODE_LENGTH.values())
        for v in values:
            if not isinstance(v, str) or len(v) not in lengths:
                raise InvalidParameters(
                    f"a filter on area column {spec.name!r} must name area codes "
                    f"({', '.join(f'{lv} {CODE_LENGTH[lv]}' for lv in LEVELS)} characters)"
                )
        return
    if spec.values is not None and op in ("eq", "ne", "in", "not_in"):
        for v in values:
            if v not in spec.values:
                raise InvalidParameters(
                    f"filter on {spec.name!r}: {v!r} is not one of its values "
                    f"({', '.join(spec.values)})"
                )
    if spec.type in ("integer", "float"):
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise InvalidParameters(f"filter on {spec.name!r} needs a number")
    if spec.type == "boolean":
        for v in values:
            if not isinstance(v, bool):
                raise InvalidParameters(f"filter on {spec.name!r} needs true or false")
