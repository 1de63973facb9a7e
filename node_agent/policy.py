"""The node's column policy: what a plan may do with each class of column, checked before any
row is read, plus the minimum query-set size checked on the result before anything is sent.

The rules follow the column classes the agency set in its manifest (DESIGN.md, "Policy model"):

* identifier — never grouped by, filtered on or output; ``count_distinct`` of it is allowed,
  because its output is a count;
* sensitive — aggregated only (``sum``, ``count_distinct``); never grouped by or filtered on (a
  filter is a one-value group-by);
* quasi-identifier — a group key only at an approved granularity: area codes rolled up to the
  agency's ``finest_level`` or coarser, other columns only when categorical (≤ 20 declared
  values); filters allowed, area-code filters naming areas no finer than ``finest_level``;
* public — free; a column the manifest does not declare is refused.

Every refusal is a :class:`TaskRefused` whose message is public: it names columns and rules,
never data values.
"""

from __future__ import annotations

import math

from datalab.errors import TaskRefused
from datalab.geography import CODE_LENGTH, LEVELS, Level, is_finer
from datalab.manifest import ColumnClass, ColumnSpec, DatasetSpec
from datalab.wire import CatalogueDataset
from node_agent.settings import NodeSettings
from recipes.contract import AggregatePlan, Filter, GroupKey, Measure
from recipes.psi_contract import PsiPlan

#: The most declared values a non-geographic quasi-identifier may have to be a group key.
MAX_CATEGORIES = 20

#: Filter operations that select areas by code (ordering comparisons would slice areas finer).
_AREA_OPS = ("eq", "ne", "in", "not_in", "is_null", "not_null")


def check_plan(
    plan: AggregatePlan, dataset_spec: DatasetSpec | CatalogueDataset, settings: NodeSettings
) -> None:
    """Raise TaskRefused (public reason) unless ``plan`` respects the column policy."""
    columns = {c.name: c for c in dataset_spec.columns}
    where = f"dataset {dataset_spec.name!r}"

    def column(name: str | None, use: str) -> ColumnSpec:
        spec = columns.get(name or "")
        if spec is None:
            raise TaskRefused(f"{use}: column {name!r} is not in {where}")
        return spec

    if not plan.measures:
        raise TaskRefused("the plan computes no measure")
    for key in plan.group_by:
        _check_group_key(key, column(key.column, "group key"), settings)
    for f in plan.filters:
        _check_filter(f, column(f.column, "filter"), settings)
    for m in plan.measures:
        if m.fn != "count":
            _check_measure(m, column(m.column, f"measure {m.alias!r}"))
    if plan.max_rows_per_person is not None:
        person = column(plan.person_column, "rows per person")
        if person.klass != ColumnClass.IDENTIFIER:
            raise TaskRefused(
                f"rows per person are bounded by an identifier column; {person.name!r} is not one"
            )
        if plan.max_rows_per_person < 1:
            raise TaskRefused("rows per person must be bounded by at least 1")


def check_query_set(query_set_size: int, settings: NodeSettings) -> None:
    """Refuse a result computed over fewer rows than the agency's minimum.

    The public reason does not say how many rows matched: a count below the minimum is exactly
    what must not be disclosed.
    """
    if query_set_size < settings.min_cell:
        raise TaskRefused(
            f"query set too small: fewer than {settings.min_cell} rows match the filters "
            f"(agency {settings.agency}'s minimum)"
        )


def _check_group_key(key: GroupKey, col: ColumnSpec, settings: NodeSettings) -> None:
    name = col.name
    if col.klass == ColumnClass.IDENTIFIER:
        raise TaskRefused(f"column {name!r} is an identifier: it is never grouped by or output")
    if col.klass == ColumnClass.SENSITIVE:
        raise TaskRefused(f"column {name!r} is sensitive: it may be aggregated, never grouped by")
    if key.level is not None and col.geo_level is None:
        raise TaskRefused(f"column {name!r} holds no area codes: it cannot be rolled up")
    if col.geo_level is not None:
        level: Level = key.level or col.geo_level
        if is_finer(level, col.geo_level):
            raise TaskRefused(f"column {name!r} holds {col.geo_level} codes: not {level}")
        if col.klass == ColumnClass.QUASI_IDENTIFIER and is_finer(level, settings.finest_level):
            raise TaskRefused(
                f"column {name!r} may be grouped at {settings.finest_level} level or coarser "
                f"at agency {settings.agency}; the plan asks for {level}"
            )
        return
    if col.klass == ColumnClass.QUASI_IDENTIFIER and (
        col.values is None or len(col.values) > MAX_CATEGORIES
    ):
        raise TaskRefused(
            f"column {name!r} is a quasi-identifier that is not categorical (at most "
            f"{MAX_CATEGORIES} declared values): it cannot be grouped by"
        )


def _check_filter(f: Filter, col: ColumnSpec, settings: NodeSettings) -> None:
    name = col.name
    if col.klass == ColumnClass.IDENTIFIER:
        raise TaskRefused(f"column {name!r} is an identifier: it is never filtered on")
    if col.klass == ColumnClass.SENSITIVE:
        raise TaskRefused(f"column {name!r} is sensitive: it may be aggregated, never filtered on")
    if col.klass != ColumnClass.QUASI_IDENTIFIER or col.geo_level is None:
        return
    if f.op not in _AREA_OPS:
        raise TaskRefused(
            f"area column {name!r} may only be filtered with {', '.join(_AREA_OPS)}, not {f.op}"
        )
    if f.op in ("is_null", "not_null"):
        return
    values = f.value if isinstance(f.value, list) else [f.value]
    finest = min(CODE_LENGTH[settings.finest_level], CODE_LENGTH[col.geo_level])
    for v in values:
        if not isinstance(v, str) or len(v) not in CODE_LENGTH.values():
            raise TaskRefused(f"a filter on area column {name!r} must name area codes")
        if len(v) > finest:
            allowed = LEVELS[list(CODE_LENGTH.values()).index(finest)]
            raise TaskRefused(
                f"a filter on area column {name!r} may name areas at {allowed} level or "
                f"coarser at agency {settings.agency}"
            )


def _check_measure(m: Measure, col: ColumnSpec) -> None:
    summed = m.fn in ("sum", "top2_abs")
    if summed and col.klass == ColumnClass.IDENTIFIER:
        raise TaskRefused(f"column {col.name!r} is an identifier: it is never summed or output")
    if summed and col.type not in ("integer", "float", "boolean"):
        raise TaskRefused(f"column {col.name!r} is not numeric: it cannot be summed")
    bounds = [b for b in (m.lower, m.upper) if b is not None]
    if not all(math.isfinite(b) for b in bounds):
        raise TaskRefused(f"measure {m.alias!r}: clamping bounds must be finite numbers")
    if (m.lower is None) != (m.upper is None) or (
        m.lower is not None and m.upper is not None and not m.lower <= m.upper
    ):
        raise TaskRefused(f"measure {m.alias!r}: clamping needs lower ≤ upper, both given")


def check_psi_plan(
    plan: PsiPlan, dataset_spec: DatasetSpec | CatalogueDataset, settings: NodeSettings
) -> None:
    """The column policy for a matching plan: identity columns are used only as match keys
    (inside the node, blinded before they leave), the area column is grouped no finer than
    ``finest_level``, and filters follow the same rules as an aggregate's."""
    columns = {c.name: c for c in dataset_spec.columns}
    where = f"dataset {dataset_spec.name!r}"
    ident = plan.identity
    for name in (ident.id, ident.name, ident.birth, ident.sex, plan.area_column):
        if name is not None and name not in columns:
            raise TaskRefused(f"match key: column {name!r} is not in {where}")
    if plan.group_level is not None:
        area = GroupKey(column=plan.area_column, level=plan.group_level)
        _check_group_key(area, columns[plan.area_column], settings)
    elif columns[plan.area_column].geo_level is None:
        raise TaskRefused(f"column {plan.area_column!r} holds no area codes")
    for f in plan.filters:
        col = columns.get(f.column)
        if col is None:
            raise TaskRefused(f"filter: column {f.column!r} is not in {where}")
        _check_filter(f, col, settings)
    if plan.active is not None:
        for name in (plan.active.start, plan.active.end):
            col = columns.get(name)
            if col is None or col.klass in (ColumnClass.IDENTIFIER, ColumnClass.SENSITIVE):
                raise TaskRefused(f"period: column {name!r} is not a usable date in {where}")
