"""Data connectors: where a node's AggregatePlan meets the agency's data.

A connector is the only part of the node that touches rows. It compiles the declarative plan
into its engine's own query so the computation runs where the data lives (DuckDB here;
PostgreSQL or Spark behind the same interface), and it hands back only the aggregate table.
"""

from __future__ import annotations

import math
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from datalab.geography import CODE_LENGTH
from datalab.manifest import AgencyManifest, ColumnSpec, DatasetSpec
from datalab.wire import CatalogueDataset, Table
from recipes.contract import AggregatePlan, Filter
from recipes.psi_contract import ActivePeriod

#: Hidden output column carrying the query-set size; never part of the returned table.
_QSS = "__query_set_size__"

#: Manifest column types → DuckDB types, used to read CSV files with the declared schema
#: (so an area code is never read as an integer and a date never as text).
_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "float": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


class ConnectorError(Exception):
    """A plan the connector cannot run (unknown dataset or column, unsupported filter).

    Its message names columns and operations only, never data values.
    """


class Connector(ABC):
    """The interface every connector implements; its contract, for every implementation:

    * ``datasets()`` describes the datasets the node holds — names, kinds, column specs and row
      counts — without reading rows (row counts come from metadata or the manifest).
    * ``spec(name)`` is the manifest entry of one dataset (its column classes drive the policy).
    * ``run(plan)`` computes the plan's grouped aggregate over the rows matching its filters and
      returns ``(table, query_set_size)``: the table has one column per group key (named by
      ``GroupKey.output_name``, area codes rolled up to the key's level) followed by one column
      per measure (named by its alias), rows sorted by the group keys; ``query_set_size`` is the
      number of rows matching the filters. ``count`` counts rows, ``sum`` is a float (None for an
      empty group), ``count_distinct`` counts distinct non-null values. Filters compare with SQL
      semantics (a comparison with null is false, so ``ne``/``not_in`` skip nulls). A filter on
      an area-code column whose value is a shorter code compares at that code's level.
    * Values in the plan are data, never code: they are bound, never spliced into a query.
    * ``run`` may be called from several threads at once.
    * Errors are raised as :class:`ConnectorError` (plan problems) or the engine's own exception;
      the executor turns them into a public "failed" reason.
    """

    @abstractmethod
    def datasets(self) -> list[CatalogueDataset]:
        """The catalogue entries of every dataset this node holds."""

    @abstractmethod
    def spec(self, name: str) -> DatasetSpec | None:
        """The manifest entry of dataset ``name``, or None when the node does not hold it."""

    @abstractmethod
    def run(self, plan: AggregatePlan) -> tuple[Table, int]:
        """The plan's aggregate table and its query-set size."""

    def atoms(self, plans: Sequence[AggregatePlan]) -> Table:
        """Query auditing's atom counts (see ``compile_atoms``); engines may not support it."""
        raise ConnectorError("this connector cannot compute query-auditing atoms")

    def read_local(
        self,
        dataset: str,
        columns: Sequence[str],
        filters: Sequence[Filter] = (),
        active: ActivePeriod | None = None,
    ) -> pa.Table:
        """Rows of ``columns`` for a matching run INSIDE the node (never sent anywhere): the
        PSI party turns them into blinded points. Connectors that cannot read rows refuse."""
        raise ConnectorError("this connector cannot read rows for matching")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine's resources."""


# ------------------------------------------------------------------ SQL compilation


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
        col = _column(columns, key.column)
        expr = quote_ident(col.name)
        if key.level is not None:
            if col.geo_level is None:
                raise ConnectorError(f"column {col.name!r} holds no area codes to roll up")
            expr = f"substr({expr}, 1, {int(CODE_LENGTH[key.level])})"
        select.append(f"{expr} AS {quote_ident(key.output_name)}")
        keys.append(expr)
        out.append(key.output_name)
    for m in plan.measures:
        if m.fn == "count":
            expr = "count(*)"
        else:
            if m.column is None:
                raise ConnectorError(f"measure {m.alias!r}: {m.fn} needs a column")
            spec_col = _column(columns, m.column)
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
        raise ConnectorError("the plan's output column names are not unique")
    qss = "sum(count(*)) OVER ()" if keys else "count(*)"
    select.append(f"{qss} AS {quote_ident(_QSS)}")
    where = [_compile_filter(f, _column(columns, f.column), params) for f in plan.filters]
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
        where = [_compile_filter(f, _column(columns, f.column), params) for f in plan.filters]
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
        col = _column(columns, name)
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
        raise ConnectorError("bounding rows per person needs the plan's person column")
    person = quote_ident(_column(columns, plan.person_column).name)
    limit = int(plan.max_rows_per_person or 1)
    return (
        f"(SELECT * FROM {relation} QUALIFY {person} IS NULL OR "
        f"row_number() OVER (PARTITION BY {person}) <= {limit})"
    )


def _column(columns: dict[str, ColumnSpec], name: str) -> ColumnSpec:
    col = columns.get(name)
    if col is None:
        raise ConnectorError(f"unknown column {name!r}")
    return col


_COMPARE = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _compile_filter(f: Filter, col: ColumnSpec, params: list[Any]) -> str:
    ident = quote_ident(col.name)
    if f.op == "is_null":
        return f"{ident} IS NULL"
    if f.op == "not_null":
        return f"{ident} IS NOT NULL"
    values = f.value if f.op in ("in", "not_in") else [f.value]
    if not isinstance(values, list) or not values:
        raise ConnectorError(f"filter on {col.name!r}: {f.op} needs a non-empty list")
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise ConnectorError(f"filter on {col.name!r}: values must be finite")
        if not isinstance(v, str | int | float | bool):
            raise ConnectorError(f"filter on {col.name!r}: values must be scalars")
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


# ------------------------------------------------------------------ DuckDB


class DuckDBConnector(Connector):
    """The default connector: DuckDB over the agency folder's Parquet and CSV files.

    One in-memory DuckDB database holds one view per dataset, created once at start; every
    ``run`` uses its own cursor on that database, so concurrent tasks share the engine (its
    threads, its Parquet metadata cache) without sharing a statement.
    """

    def __init__(
        self, data_dir: Path, *, threads: int | None = None, manifest: AgencyManifest | None = None
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.manifest = manifest or AgencyManifest.load(self.data_dir)
        config: dict[str, Any] = {}
        if threads is not None:
            config["threads"] = threads
        self._conn = duckdb.connect(":memory:", config=config)
        # the Parquet footers are read once, not once per task
        self._conn.execute("SET parquet_metadata_cache = true")
        self._lock = threading.Lock()
        self._specs = {d.name: d for d in self.manifest.datasets}
        self._catalogue: list[CatalogueDataset] = []
        for spec in self.manifest.datasets:
            self._create_view(spec)
            self._catalogue.append(self._describe(spec))

    # -- start-up

    def _file(self, spec: DatasetSpec) -> Path:
        path = (self.data_dir / spec.path).resolve()
        if not path.is_relative_to(self.data_dir):
            raise ConnectorError(f"dataset {spec.name!r}: path leaves the agency folder")
        if not path.exists():
            raise ConnectorError(f"dataset {spec.name!r}: {spec.path} does not exist")
        return path

    def _create_view(self, spec: DatasetSpec) -> None:
        path = self._file(spec)
        source = str(path / "**" / f"*.{spec.format}") if path.is_dir() else str(path)
        if spec.format == "parquet":
            reader = f"read_parquet({quote_literal(source)})"
        else:
            types = ", ".join(
                f"{quote_literal(c.name)}: {quote_literal(_DUCKDB_TYPES[c.type])}"
                for c in spec.columns
            )
            reader = f"read_csv({quote_literal(source)}, header = true, columns = {{{types}}})"
        self._conn.execute(f"CREATE VIEW {quote_ident(spec.name)} AS SELECT * FROM {reader}")
        present = {
            row[0] for row in self._conn.execute(f"DESCRIBE {quote_ident(spec.name)}").fetchall()
        }
        missing = [c.name for c in spec.columns if c.name not in present]
        if missing:
            raise ConnectorError(
                f"dataset {spec.name!r}: columns {missing} of the manifest are not in {spec.path}"
            )

    def _describe(self, spec: DatasetSpec) -> CatalogueDataset:
        path = self._file(spec)
        rows = spec.rows
        if spec.format == "parquet" and path.is_file():
            rows = pq.read_metadata(path).num_rows  # footer only, no scan
        return CatalogueDataset(
            name=spec.name,
            kind=spec.kind,
            rows=rows,
            description=spec.description,
            refreshed_at=path.stat().st_mtime,
            columns=list(spec.columns),
        )

    # -- the interface

    def datasets(self) -> list[CatalogueDataset]:
        return list(self._catalogue)

    def spec(self, name: str) -> DatasetSpec | None:
        return self._specs.get(name)

    def run(self, plan: AggregatePlan) -> tuple[Table, int]:
        spec = self._specs.get(plan.dataset)
        if spec is None:
            raise ConnectorError(f"this node holds no dataset {plan.dataset!r}")
        query = compile_plan(plan, spec, quote_ident(spec.name))
        with self._lock:
            cursor = self._conn.cursor()
        try:
            result = cursor.execute(query.sql, query.params)
            types = [str(d[1]) for d in result.description or []][:-1]
            rows = result.fetchall()
        finally:
            cursor.close()
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

    def atoms(self, plans: Sequence[AggregatePlan]) -> Table:
        """Query auditing's atom counts for ``plans`` over one dataset (``compile_atoms``)."""
        spec = self._specs.get(plans[0].dataset)
        if spec is None:
            raise ConnectorError(f"this node holds no dataset {plans[0].dataset!r}")
        query = compile_atoms(plans, spec, quote_ident(spec.name))
        with self._lock:
            cursor = self._conn.cursor()
        try:
            rows = cursor.execute(query.sql, query.params).fetchall()
        finally:
            cursor.close()
        return Table(
            columns=query.output_columns,
            rows=[[None if v is None else _json_value(v) for v in r] for r in rows],
        )

    def read_local(
        self,
        dataset: str,
        columns: Sequence[str],
        filters: Sequence[Filter] = (),
        active: ActivePeriod | None = None,
    ) -> pa.Table:
        spec = self._specs.get(dataset)
        if spec is None:
            raise ConnectorError(f"this node holds no dataset {dataset!r}")
        known = {c.name: c for c in spec.columns}
        params: list[Any] = []
        select = ", ".join(quote_ident(_column(known, c).name) for c in columns)
        where = [_compile_filter(f, _column(known, f.column), params) for f in filters]
        if active is not None:
            start = quote_ident(_column(known, active.start).name)
            end = quote_ident(_column(known, active.end).name)
            where.append(
                f"{start} <= CAST(? AS DATE) AND ({end} IS NULL OR {end} >= CAST(? AS DATE))"
            )
            params += [active.on, active.on]
        sql = f"SELECT {select} FROM {quote_ident(spec.name)}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            cursor = self._conn.cursor()
        try:
            return cursor.sql(sql, params=params).to_arrow_table()
        finally:
            cursor.close()

    def close(self) -> None:
        self._conn.close()


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
