"""The hub's tables and its database handle.

The database is the hub's only state: jobs, tasks and the audit log survive a restart because
they live here, and the in-process notifications (``notify.py``) only wake waiters. SQLite in WAL
mode is the embedded default; PostgreSQL is chosen by URL (``postgresql+psycopg://...``).

Writes are short transactions taken through ``Database.write()``, which serialises them in the
process (one lock) and, on SQLite, begins them ``IMMEDIATE`` so a second process (the users CLI)
waits on the busy timeout instead of failing on a lock upgrade.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)


def now() -> float:
    return time.time()


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    agency: Mapped[str | None] = mapped_column(String(64))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Node(Base):
    __tablename__ = "nodes"

    agency: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    min_cell: Mapped[int] = mapped_column(Integer)
    registered_at: Mapped[float] = mapped_column(Float, default=now)
    last_seen: Mapped[float | None] = mapped_column(Float)

    datasets: Mapped[list[Dataset]] = relationship(
        back_populates="node", cascade="all, delete-orphan", order_by="Dataset.name"
    )


class Dataset(Base):
    """One dataset a node declared: metadata only, never rows."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("agency", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency: Mapped[str] = mapped_column(ForeignKey("nodes.agency", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(128))
    rows: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    refreshed_at: Mapped[float] = mapped_column(Float)

    node: Mapped[Node] = relationship(back_populates="datasets")
    columns: Mapped[list[Column]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", order_by="Column.position"
    )


class Column(Base):
    __tablename__ = "columns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(32))
    klass: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    geo_level: Mapped[str | None] = mapped_column(String(16))
    values: Mapped[list[str] | None] = mapped_column(JSON)

    dataset: Mapped[Dataset] = relationship(back_populates="columns")


class RecipeRow(Base):
    """A recipe the hub serves, synced from the registry at start."""

    __tablename__ = "recipes"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(32))
    code_sha256: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    synced_at: Mapped[float] = mapped_column(Float, default=now)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_analyst", "analyst"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    analyst: Mapped[str] = mapped_column(String(64))
    recipe: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(32))
    code_sha256: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    tasks: Mapped[list[TaskRow]] = relationship(
        back_populates="job", order_by="TaskRow.agency, TaskRow.dataset"
    )


class TaskRow(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_agency_state", "agency", "state"),
        Index("ix_tasks_state_expires", "state", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    agency: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    #: the Task as signed (JSON) and the hub's signature over its canonical bytes.
    task: Mapped[dict[str, Any]] = mapped_column(JSON)
    signature: Mapped[str] = mapped_column(String(128))
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    partial: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    node_signature: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="tasks")


class AuditRow(Base):
    """One entry of the hash-chained audit log (see ``audit.py``); ``data`` is canonical JSON."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[float] = mapped_column(Float)
    event: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    data: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class DisclosureSetting(Base):
    """An agency admin's value for one disclosure setting on its agency's data."""

    __tablename__ = "disclosure_settings"
    __table_args__ = (UniqueConstraint("agency", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[Any] = mapped_column(JSON)
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[float] = mapped_column(Float, default=now)


class BudgetCap(Base):
    """An agency admin's privacy budget (total epsilon) for one analyst, or ``*`` for every
    analyst, on one of the agency's scopes (``dataset:<agency>/<name>``, later ``psi:...``)."""

    __tablename__ = "budget_caps"
    __table_args__ = (UniqueConstraint("scope", "analyst"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(200))
    analyst: Mapped[str] = mapped_column(String(64))
    epsilon: Mapped[float] = mapped_column(Float)
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[float] = mapped_column(Float, default=now)


class BudgetAccount(Base):
    """What one analyst has spent on one scope: only ever increased, by a conditional UPDATE
    that refuses to pass the cap (so concurrent debits cannot overspend)."""

    __tablename__ = "budget_accounts"

    analyst: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    spent: Mapped[float] = mapped_column(Float, default=0.0)


class BudgetDebit(Base):
    """One debit of the ledger: which job spent how much of which scope, and when."""

    __tablename__ = "budget_debits"
    __table_args__ = (Index("ix_budget_debits_analyst_scope", "analyst", "scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analyst: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(200))
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    epsilon: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float, default=now)


class ReleasedQuery(Base):
    """What one analyst was released on one dataset, for query auditing: the query's filters
    and group keys and the keys of its released cells — never rows or identifiers."""

    __tablename__ = "released_queries"
    __table_args__ = (Index("ix_released_queries_who", "analyst", "agency", "dataset"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analyst: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(32))
    agency: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(128))
    filters: Mapped[list[Any]] = mapped_column(JSON)
    group_by: Mapped[list[Any]] = mapped_column(JSON)
    released: Mapped[list[Any]] = mapped_column(JSON)
    at: Mapped[float] = mapped_column(Float, default=now)


class Database:
    """Engines and sessions for one hub database; ``read()`` and ``write()`` are the only doors."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.is_postgres = parsed.get_backend_name() == "postgresql"
        self._lock = threading.Lock()
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(url, begin="BEGIN")
            self._write_engine = _sqlite_engine(url, begin="BEGIN IMMEDIATE")
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            self._write_engine = self.engine
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)

    def create_all(self) -> None:
        with self._lock:
            Base.metadata.create_all(self._write_engine)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (a consistent snapshot per transaction); never commits."""
        with self._read_sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One short write transaction, committed on success, rolled back on any error."""
        with self._lock, self._write_sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        if self._write_engine is not self.engine:
            self._write_engine.dispose()


def _sqlite_engine(url: str, begin: str) -> Engine:
    """A SQLite engine in WAL mode with a busy timeout, issuing ``begin`` for each transaction.

    pysqlite's own implicit transactions are switched off (isolation_level None) so that we
    choose BEGIN or BEGIN IMMEDIATE ourselves — the documented SQLAlchemy recipe.
    """
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine
