"""Fixtures for the node agent's unit tests: a small agency folder (Parquet + CSV + manifest),
a test recipe whose plan the test steers through its parameters, a test hub key that signs
tasks, and a fully wired Executor over a temporary state folder. No hub process is involved.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from datalab.manifest import AgencyManifest, ColumnSpec, DatasetSpec
from datalab.signing import SigningKey, load_or_create_key
from datalab.wire import CatalogueDataset, SignedTask, Table, Task
from node_agent.connector import DuckDBConnector
from node_agent.executor import Executor
from node_agent.grant_store import ApprovalStore
from node_agent.log import LocalLog
from node_agent.replay import NonceStore
from node_agent.settings import NodeSettings
from recipes.contract import (
    AggregatePlan,
    Combined,
    DatasetRole,
    Filter,
    GroupKey,
    Measure,
    OutputColumn,
    ParamSpec,
    Recipe,
    RecipeManifest,
    Target,
)
from recipes.registry import RecipeRegistry

AGENCY = "district_440103"
ROWS = 600


class PlanRecipe(Recipe):
    """A test recipe that turns its parameters straight into a plan, so each test can ask the
    node for exactly the plan it wants to check (real recipes validate far more)."""

    manifest = RecipeManifest(
        name="test_plan",
        version="1.0.0",
        title="Test plan",
        purpose="Lets node tests steer the AggregatePlan through parameters.",
        datasets=[DatasetRole(role="people", kind="district_population")],
        params=[
            ParamSpec(name="group_by", type="str_list", description="group keys", default=[]),
            ParamSpec(name="level", type="level", description="roll-up level"),
            ParamSpec(name="filters", type="filter_list", description="filters", default=[]),
            ParamSpec(name="sum", type="str", description="column to sum"),
            ParamSpec(name="distinct", type="str", description="column to count distinct"),
            ParamSpec(name="limit", type="int", description="a bounded number", default=5),
        ],
        output=[OutputColumn(name="n", type="integer")],
    )

    def targets(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]]
    ) -> list[Target]:
        return [Target(agency=a, dataset=d.name) for a, d in catalogue]

    def plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> AggregatePlan:
        geo = {c.name for c in dataset.columns if c.geo_level is not None}
        keys = [
            GroupKey(column=c, level=params.get("level"), alias=params.get("level"))
            if c in geo and params.get("level")
            else GroupKey(column=c)
            for c in params.get("group_by") or []
        ]
        measures = [Measure(fn="count", alias="n")]
        if params.get("sum"):
            measures.append(Measure(fn="sum", column=params["sum"], alias="total"))
        if params.get("distinct"):
            measures.append(Measure(fn="count_distinct", column=params["distinct"], alias="d"))
        return AggregatePlan(
            dataset=dataset.name,
            group_by=keys,
            filters=[Filter(column=c, op=op, value=v) for c, op, v in params.get("filters") or []],
            measures=measures,
        )

    def combine(self, params: Mapping[str, Any], partials: Sequence[Table]) -> Combined:
        raise NotImplementedError


def make_frame(rows: int = ROWS, seed: int = 7) -> pd.DataFrame:
    """A district population with realistic columns, some nulls, and several rows per grid."""
    rng = np.random.default_rng(seed)
    grids = [
        f"4401{d:02d}{s:03d}{c:03d}{g:03d}"
        for d in (3, 4)
        for s in (1, 2)
        for c in (1, 2)
        for g in (1, 2, 3)
    ]
    grid = rng.choice(grids, rows).astype(object)
    grid[rng.random(rows) < 0.03] = None
    income = rng.gamma(2.0, 3000.0, rows).round(2)
    income[rng.random(rows) < 0.05] = np.nan
    age = rng.integers(0, 95, rows)
    bands = pd.cut(
        age,
        [-1, 14, 24, 44, 59, 79, 200],
        labels=["0-14", "15-24", "25-44", "45-59", "60-79", "80+"],
    )
    return pd.DataFrame(
        {
            "id_number": [f"44010319{i:08d}X" for i in range(rows)],
            "name": [f"Person {i}" for i in range(rows)],
            "sex": rng.choice(["M", "F"], rows),
            "age": age.astype("int64"),
            "age_band": bands.astype(str),
            "grid": pd.array(grid, dtype="string"),
            "is_migrant": rng.random(rows) < 0.3,
            "employer_id": pd.array(rng.choice([f"E{i}" for i in range(40)], rows), "string"),
            "monthly_income": income,
            "household_size": rng.integers(1, 7, rows).astype("int64"),
            "registered_on": pd.to_datetime("2015-01-01")
            + pd.to_timedelta(rng.integers(0, 3000, rows), unit="D"),
        }
    )


COLUMNS = [
    ColumnSpec.model_validate(c)
    for c in [
        {"name": "id_number", "type": "string", "class": "identifier"},
        {"name": "name", "type": "string", "class": "identifier"},
        {"name": "sex", "type": "string", "class": "quasi_identifier", "values": ["M", "F"]},
        {"name": "age", "type": "integer", "class": "quasi_identifier"},
        {
            "name": "age_band",
            "type": "string",
            "class": "public",
            "values": ["0-14", "15-24", "25-44", "45-59", "60-79", "80+"],
        },
        {"name": "grid", "type": "string", "class": "quasi_identifier", "geo_level": "grid"},
        {"name": "is_migrant", "type": "boolean", "class": "public"},
        {"name": "employer_id", "type": "string", "class": "public"},
        {"name": "monthly_income", "type": "float", "class": "sensitive"},
        {"name": "household_size", "type": "integer", "class": "sensitive"},
        {"name": "registered_on", "type": "date", "class": "public"},
    ]
]


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> Path:
    folder = tmp_path_factory.mktemp("agency") / AGENCY
    folder.mkdir()
    out = frame.copy()
    out["registered_on"] = out["registered_on"].dt.date
    out.to_parquet(folder / "population.parquet", index=False)
    out.to_csv(folder / "population.csv", index=False)
    AgencyManifest(
        agency=AGENCY,
        title="Test district",
        datasets=[
            DatasetSpec(
                name="population",
                kind="district_population",
                path="population.parquet",
                rows=len(frame),
                columns=COLUMNS,
            ),
            DatasetSpec(
                name="population_csv",
                kind="district_population",
                path="population.csv",
                format="csv",
                rows=len(frame),
                columns=COLUMNS,
            ),
        ],
    ).write(folder)
    return folder


@pytest.fixture(scope="session")
def connector(data_dir: Path) -> Iterator[DuckDBConnector]:
    conn = DuckDBConnector(data_dir, threads=2)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def recipe() -> PlanRecipe:
    return PlanRecipe()


@pytest.fixture(scope="session")
def registry(recipe: PlanRecipe) -> RecipeRegistry:
    return RecipeRegistry([recipe])


@pytest.fixture(scope="session")
def hub_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def settings(tmp_path: Path, data_dir: Path, hub_key: SigningKey) -> NodeSettings:
    return NodeSettings(
        agency=AGENCY,
        data_dir=data_dir,
        state_dir=tmp_path / "state",
        hub_url="http://hub.invalid",
        hub_public_key=hub_key.public_key,
        min_cell=10,
    )


@pytest.fixture
def executor(
    settings: NodeSettings,
    connector: DuckDBConnector,
    registry: RecipeRegistry,
    recipe: PlanRecipe,
    hub_key: SigningKey,
) -> Iterator[Executor]:
    node_key = load_or_create_key(settings.key_path)
    approvals = ApprovalStore(settings.state, settings.agency)
    approvals.approve(
        recipe.name,
        recipe.version,
        recipe.code_sha256(),
        bounds={
            "limit": {"minimum": 1, "maximum": 10},
            "level": {"choices": ["district", "street"]},
        },
        approved_by="admin",
    )
    nonces = NonceStore(settings.nonces_path)
    yield Executor(
        settings=settings,
        connector=connector,
        registry=registry,
        approvals=approvals,
        nonces=nonces,
        log=LocalLog(settings.log_path, node_key),
        node_key=node_key,
        hub_public_key=hub_key.public_key,
    )
    nonces.close()


TaskFactory = Callable[..., SignedTask]


@pytest.fixture
def make_task(hub_key: SigningKey, recipe: PlanRecipe) -> TaskFactory:
    """Build a task signed by the test hub; keyword arguments override the task's fields."""

    def build(
        params: dict[str, Any] | None = None, *, key: SigningKey | None = None, **fields: Any
    ) -> SignedTask:
        now = time.time()
        values: dict[str, Any] = {
            "task_id": uuid.uuid4().hex,
            "job_id": uuid.uuid4().hex,
            "agency": AGENCY,
            "dataset": "population",
            "recipe": recipe.name,
            "version": recipe.version,
            "code_sha256": recipe.code_sha256(),
            "params": params if params is not None else {"group_by": ["sex"]},
            "issued_at": now,
            "expires_at": now + 60,
            "nonce": secrets.token_hex(16),
        }
        values.update(fields)
        task = Task(**values)
        signer = key or hub_key
        return SignedTask(task=task, signature=signer.sign_value(task.model_dump(mode="json")))

    return build
