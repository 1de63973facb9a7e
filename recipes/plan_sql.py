"""The plan compiler: a declarative ``AggregatePlan`` as one SQL statement, and the rows a
DB-API cursor returns for it as a ``Table``.

It sits in the recipe layer because two parties run plans: each node on its agency's data
(``node_agent/connector.py``) and the hub on made-up rows of a dataset's schema, so an agency
admin sees what a recipe would compute before approving it (``lab_server/review.py``). Both use
this one compiler, so the SQL an admin's preview runs is the SQL the node runs.

Values in a plan are data, never code: they are bound as parameters, never spliced into SQL.
Errors name columns and operations only, never data values.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from datalab.geography import CODE_LENGTH
from datalab.manifest import ColumnSpec, DatasetSpec
from datalab.wire import Table
from recipes.contract import AggregatePlan, Filter

#: Hidden output column carrying the query-set size; never part of the returned table.
QSS = "__query_set_size__"


class PlanError(Exception):
    """A plan that cannot run on a dataset (unknown column, unsupported filter or roll-up)."""


def quote_ident(name: str) -> str:
    """A SQL identifier, double-quoted, with embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A SQL string literal; only used for the agency's own file paths in view definitions."""
    return "'" + text.replace("'", "''") + "'"


@dataclass
class CompiledQuery:
    sql: str
    params: list[Any] = field(default_factory=list)
    output_columns: list[str] = field(default_factory=list)
    #: positions of the output columns that are sums, returned as floats.
    float_columns: list[int] = field(default_factory=list)
    #: positions of the output columns that are lists of floats (top2_abs).
    list_columns: list[int] = field(default_factory=list)


def compile_plan(plan: AggregatePlan, spec: DatasetSpec, relation: str) -> CompiledQuery:
    """The plan as one SQL statement with bound parameters.

    The query-set size is computed in the same scan: without group keys it is the (hidden)
    ``count(*)``; with group keys it is ``sum(count(*)) OVER ()``, a window over the already
    grouped rows, so the data is read once.
    """
    columns = {c.name: c for c in spec.columns}
    params: list[Any] = []
    select: list[str] = []
    keys: list[str] = []
    out: list[str] = []
    floats: list[int] = []
    lists: list[int] = []
    if plan.max_rows_per_person is not None:
        relation = _bounded(plan, columns, relation)
    for key in plan.group_by:
        col = column_spec(columns, key.column)
        expr = quote_ident(col.name)
        if key.level is not None:
            if col.geo_level is None:
                raise PlanError(f"column {col.name!r} holds no area codes to roll up")
            expr = f"substr({expr}, 1, {int(CODE_LENGTH[key.level])})"
        select.append(f"{expr} AS {quote_ident(key.output_name)}")
        keys.append(expr)
        out.append(key.output_name)
    for m in plan.measures:
        if m.fn == "count":
            expr = "count(*)"
        else:
            if m.column is None:
                raise PlanError(f"measure {m.alias!r}: {m.fn} needs a column")
            spec_col = column_spec(columns, m.column)
            col = quote_ident(spec_col.name)
            if m.fn == "count_distinct":
                expr = f"count(DISTINCT {col})"
            elif m.fn == "top2_abs":
                lists.append(len(out))
                expr = f"max(abs(CAST({col} AS DOUBLE)), 2)"
            elif m.lower is not None and m.upper is not None:
                # contribution bounding: NaN sorts above every number in DuckDB, so least()
                # clamps NaN and +inf to the upper bound and greatest() -inf to the lower one;
                # least() would also turn NULL into the bound, so nulls stay out explicitly
                floats.append(len(out))
                value = f"CAST({col} AS DOUBLE)"
                clamped = f"greatest(least({value}, {float(m.upper)!r}), {float(m.lower)!r})"
                expr = f"sum(CASE WHEN {col} IS NULL THEN NULL ELSE {clamped} END)"
            else:
                # made a float in Python (casting inside the aggregate costs a third of the scan)
                floats.append(len(out))
                expr = (
                    f"sum(CAST({col} AS INTEGER))" if spec_col.type == "boolean" else f"sum({col})"
                )
        select.append(f"{expr} AS {quote_ident(m.alias)}")
        out.append(m.alias)
    if len(set(out)) != len(out):
        raise PlanError("the plan's output column names are not unique")
    qss = "sum(count(*)) OVER ()" if keys else "count(*)"
    select.append(f"{qss} AS {quote_ident(QSS)}")
    where = [compile_filter(f, column_spec(columns, f.column), params) for f in plan.filters]
    sql = f"SELECT {', '.join(select)} FROM {relation}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if keys:
        positions = ", ".join(str(i + 1) for i in range(len(keys)))
        sql += f" GROUP BY {positions} ORDER BY {positions} NULLS LAST"
    return CompiledQuery(
        sql=sql, params=params, output_columns=out, float_columns=floats, list_columns=lists
    )


def compile_atoms(
    plans: Sequence[AggregatePlan], spec: DatasetSpec, relation: str
) -> CompiledQuery:
    """Query auditing's atoms: one row per combination of "which plans' filters match" and the
    finest value of every group key any plan uses, with its row count (``n``).

    Every released cell of every plan is a union of atoms, so the hub can tell which cells
    contain which and how many rows their differences hold — the atoms themselves go to the
    hub only (like any partial), never to an analyst.
    """
    columns = {c.name: c for c in spec.columns}
    params: list[Any] = []
    select: list[str] = []
    out: list[str] = []
    for i, plan in enumerate(plans):
        where = [compile_filter(f, column_spec(columns, f.column), params) for f in plan.filters]
        predicate = " AND ".join(f"({w})" for w in where) if where else "TRUE"
        select.append(f"coalesce(({predicate}), FALSE) AS p{i}")
        out.append(f"p{i}")
    finest: dict[str, str | None] = {}  # None: the column's own (finest) level
    for plan in plans:
        for key in plan.group_by:
            if key.column not in finest:
                finest[key.column] = key.level
                continue
            current = finest[key.column]
            if current is not None and (key.level is None or _finer(key.level, current)):
                finest[key.column] = key.level
    for name, level in sorted(finest.items()):
        col = column_spec(columns, name)
        expr = quote_ident(col.name)
        if level is not None:
            expr = f"substr({expr}, 1, {int(CODE_LENGTH[level])})"  # type: ignore[index]
        alias = f"k:{name}:{level or ''}"
        select.append(f"{expr} AS {quote_ident(alias)}")
        out.append(alias)
    select.append("count(*) AS n")
    out.append("n")
    groups = ", ".join(str(i + 1) for i in range(len(out) - 1))
    sql = f"SELECT {', '.join(select)} FROM {relation} GROUP BY {groups}"
    return CompiledQuery(sql=sql, params=params, output_columns=out)


def _finer(a: str, b: str) -> bool:
    return int(CODE_LENGTH[a]) > int(CODE_LENGTH[b])  # type: ignore[index]


def _bounded(plan: AggregatePlan, columns: dict[str, ColumnSpec], relation: str) -> str:
    """The relation with at most ``max_rows_per_person`` rows per person (contribution bounding,
    before any filter: which rows are kept must not depend on the query)."""
    if plan.person_column is None:
        raise PlanError("bounding rows per person needs the plan's person column")
    person = quote_ident(column_spec(columns, plan.person_column).name)
    limit = int(plan.max_rows_per_person or 1)
    return (
        f"(SELECT * FROM {relation} QUALIFY {person} IS NULL OR "
        f"row_number() OVER (PARTITION BY {person}) <= {limit})"
    )


def column_spec(columns: dict[str, ColumnSpec], name: str) -> ColumnSpec:
    col = columns.get(name)
    if col is None:
        raise PlanError(f"unknown column {name!r}")
    return col


_COMPARE = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def compile_filter(f: Filter, col: ColumnSpec, params: list[Any]) -> str:
    ident = quote_ident(col.name)
    if f.op == "is_null":
        return f"{ident} IS NULL"
    if f.op == "not_null":
        return f"{ident} IS NOT NULL"
    values = f.value if f.op in ("in", "not_in") else [f.value]
    if not isinstance(values, list) or not values:
        raise PlanError(f"filter on {col.name!r}: {f.op} needs a non-empty list")
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise PlanError(f"filter on {col.name!r}: values must be finite")
        if not isinstance(v, str | int | float | bool):
            raise PlanError(f"filter on {col.name!r}: values must be scalars")
    if f.op in ("in", "not_in"):
        parts = []
        for expr, group in _area_groups(ident, col, values):
            params.extend(group)
            parts.append(f"{expr} IN ({', '.join('?' for _ in group)})")
        clause = parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
        # NOT IN on a null yields null (row skipped), matching ne's semantics.
        return clause if f.op == "in" else f"NOT {clause}"
    ((expr, _),) = _area_groups(ident, col, values)
    params.append(f.value)
    return f"{expr} {_COMPARE[f.op]} ?"


def _area_groups(ident: str, col: ColumnSpec, values: Sequence[Any]) -> list[tuple[str, list[Any]]]:
    """Split filter values by the area level they name, so ``grid eq '440103'`` means "in
    district 440103". Values of non-area columns, or at the column's own level, compare as is."""
    if col.geo_level is None:
        return [(ident, list(values))]
    own = CODE_LENGTH[col.geo_level]
    groups: dict[int, list[Any]] = {}
    for v in values:
        length = len(v) if isinstance(v, str) and len(v) in CODE_LENGTH.values() else own
        groups.setdefault(min(length, own), []).append(v)
    return [
        (ident if length == own else f"substr({ident}, 1, {int(length)})", group)
        for length, group in sorted(groups.items())
    ]


def run_plan(
    cursor: Any, plan: AggregatePlan, spec: DatasetSpec, relation: str
) -> tuple[Table, int]:
    """Run ``plan`` on ``relation`` through a DB-API cursor: (table, query-set size)."""
    query = compile_plan(plan, spec, relation)
    result = cursor.execute(query.sql, query.params)
    types = [str(d[1]) for d in result.description or []][:-1]
    rows = result.fetchall()
    qss = int(rows[0][-1]) if rows and rows[0][-1] is not None else 0
    table_rows = [list(row[:-1]) for row in rows]
    # convert only the columns that need it: a grid-level result has tens of thousands of
    # rows, and a per-value conversion would cost more than the scan itself
    for i, type_name in enumerate(types):
        convert = (
            _float
            if i in query.float_columns
            else _float_list
            if i in query.list_columns
            else _converter(type_name)
        )
        if convert is not None:
            for row in table_rows:
                if row[i] is not None:
                    row[i] = convert(row[i])
    return Table(columns=query.output_columns, rows=table_rows), qss


def run_atoms(
    cursor: Any, plans: Sequence[AggregatePlan], spec: DatasetSpec, relation: str
) -> Table:
    """Query auditing's atom counts for ``plans`` over one relation (``compile_atoms``)."""
    query = compile_atoms(plans, spec, relation)
    rows = cursor.execute(query.sql, query.params).fetchall()
    return Table(
        columns=query.output_columns,
        rows=[[None if v is None else _json_value(v) for v in r] for r in rows],
    )


#: DuckDB result types whose Python values are already valid canonical JSON.
_PLAIN_TYPES = {
    "VARCHAR",
    "BIGINT",
    "INTEGER",
    "SMALLINT",
    "TINYINT",
    "UBIGINT",
    "UINTEGER",
    "USMALLINT",
    "UTINYINT",
    "BOOLEAN",
}


def _converter(type_name: str) -> Callable[[Any], Any] | None:
    """How to make a column's values canonical JSON (None when they already are)."""
    return None if type_name in _PLAIN_TYPES else _json_value


def _float(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _float_list(value: Any) -> list[float]:
    """A list of numbers as finite floats (a NaN or infinity becomes the largest float: for a
    dominance rule an unknown value must look dominant, never harmless)."""
    out = []
    for v in value or []:
        number = float(v)
        out.append(number if math.isfinite(number) else sys.float_info.max)
    return out


def _json_value(value: Any) -> Any:
    """A DuckDB value as something canonical JSON can hold (no NaN, no dates, no decimals)."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return _float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
