"""Streaming output: one append-only writer per dataset, fixed Parquet options, manifests at the
end, and the whole tree built in a temporary sibling directory that is renamed into place only
when complete, so a failed or interrupted run never leaves a half-written city.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from synthetic_city.schema import Dataset

#: Fixed Parquet options: same input, same bytes (no timestamps or host data are written).
PARQUET_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "version": "2.6",
}


class TableSink:
    """Appends tables (one or more row groups per call) to one Parquet or CSV file.

    Writes (encoding and compression, which release the GIL) run on ``executor`` when given, so
    the generator computes the next table on one core while the other compresses this one. One
    worker thread for all sinks keeps every file's row groups in submission order.
    """

    def __init__(
        self, path: Path, schema: pa.Schema, fmt: str, executor: ThreadPoolExecutor | None = None
    ) -> None:
        self.path = path
        self.executor = executor
        self._pending: list[Future[None]] = []
        self.schema = schema
        self.format = fmt
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: pq.ParquetWriter | pacsv.CSVWriter
        if fmt == "parquet":
            self._writer = pq.ParquetWriter(path, schema, **PARQUET_OPTIONS)  # type: ignore[arg-type]
        else:
            self._writer = pacsv.CSVWriter(path, schema)

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = table.select(self.schema.names).cast(self.schema)
        self.rows += table.num_rows
        if self.executor is None:
            self._writer.write_table(table)
        else:
            still: list[Future[None]] = []
            for future in self._pending:
                if future.done():
                    future.result()  # surface a failed write now
                else:
                    still.append(future)
            self._pending = [*still, self.executor.submit(self._writer.write_table, table)]

    def flush(self) -> None:
        """Wait for queued writes (bounds memory to one chunk's tables)."""
        for future in self._pending:
            future.result()
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._writer.close()


class OutputTree:
    """The sinks of one run, keyed by (folder, dataset name)."""

    def __init__(self, root: Path, fmt: str) -> None:
        self.root = root
        self.format = fmt
        self.sinks: dict[tuple[str, str], TableSink] = {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-writer")

    def open(self, folder: str, dataset: Dataset, fmt: str | None = None) -> TableSink:
        fmt = fmt or self.format
        path = self.root / folder / f"{dataset.name}.{fmt}"
        sink = TableSink(path, dataset.arrow_schema, fmt, self.executor)
        self.sinks[(folder, dataset.name)] = sink
        return sink

    def open_raw(self, folder: str, name: str, schema: pa.Schema) -> TableSink:
        """A Parquet sink outside the agency contract (truth files)."""
        path = self.root / folder / f"{name}.parquet"
        sink = TableSink(path, schema, "parquet", self.executor)
        self.sinks[(folder, name)] = sink
        return sink

    def get(self, folder: str, name: str) -> TableSink:
        return self.sinks[(folder, name)]

    def flush(self) -> None:
        for sink in self.sinks.values():
            sink.flush()

    def close(self) -> None:
        try:
            for sink in self.sinks.values():
                sink.close()
        finally:
            self.executor.shutdown(wait=True)


def write_table(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **PARQUET_OPTIONS)  # type: ignore[arg-type]


def check_target(out_dir: Path, force: bool) -> None:
    """Refuse a target that exists and is not an empty directory, unless forced."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not force:
            raise FileExistsError(f"{out_dir} exists and is not empty (use --force to replace it)")


@contextmanager
def staged_directory(out_dir: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir``; on success replace ``out_dir`` with it."""
    out_dir = out_dir.absolute()
    check_target(out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)
