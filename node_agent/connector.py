"""Data connectors: where a node's AggregatePlan meets the agency's data.

A connector is the only part of the node that touches rows. It compiles the declarative plan
into its engine's own query so the computation runs where the data lives (DuckDB here;
PostgreSQL or Spark behind the same interface), and it hands back only the aggregate table.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from datalab.manifest import AgencyManifest, DatasetSpec
from datalab.wire import CatalogueDataset, Table
from recipes.contract import AggregatePlan, Filter
from recipes.plan_sql import (
    PlanError,
    column_spec,
    compile_filter,
    quote_ident,
    quote_literal,
    run_atoms,
    run_plan,
)
from recipes.psi_contract import ActivePeriod

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


class ConnectorError(PlanError):
    """A plan the connector cannot run (unknown dataset, a file gone, a plan it cannot compile).

    Its message names datasets, columns and operations only, never data values.
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
        with self._lock:
            cursor = self._conn.cursor()
        try:
            return run_plan(cursor, plan, spec, quote_ident(spec.name))
        finally:
            cursor.close()

    def atoms(self, plans: Sequence[AggregatePlan]) -> Table:
        """Query auditing's atom counts for ``plans`` over one dataset (``compile_atoms``)."""
        spec = self._specs.get(plans[0].dataset)
        if spec is None:
            raise ConnectorError(f"this node holds no dataset {plans[0].dataset!r}")
        with self._lock:
            cursor = self._conn.cursor()
        try:
            return run_atoms(cursor, plans, spec, quote_ident(spec.name))
        finally:
            cursor.close()

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
        select = ", ".join(quote_ident(column_spec(known, c).name) for c in columns)
        where = [compile_filter(f, column_spec(known, f.column), params) for f in filters]
        if active is not None:
            start = quote_ident(column_spec(known, active.start).name)
            end = quote_ident(column_spec(known, active.end).name)
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
