"""Fixtures for the hub's tests: a hub on SQLite (and PostgreSQL when one is configured), people
with tokens, and simulated nodes that sign with their own keys — no real node process."""

from __future__ import annotations

import json
import os
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from datalab.manifest import ColumnSpec
from datalab.signing import SigningKey, sign_request
from datalab.wire import (
    CatalogueDataset,
    NodeRegistration,
    Partial,
    PartialStatus,
    SignedPartial,
    SignedRegistration,
    SignedTask,
    Table,
)
from datalab_cli.hub_command import create_user
from lab_server.app import create_app
from lab_server.settings import DEV_ENROLMENT_TOKEN, HubSettings
from tests.lab_server import hub_recipes

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 package for its TestClient; the project pins httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

POSTGRES_URL = os.environ.get("DATALAB_TEST_POSTGRES_URL")


def _postgres_schema_url(base: str) -> Iterator[str]:
    """A fresh schema per test on the shared test database, dropped afterwards."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    plain = base.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not POSTGRES_URL, reason="DATALAB_TEST_POSTGRES_URL is not set"),
            ],
        ),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store under test: each test of the shared store suite runs once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        assert POSTGRES_URL is not None
        yield from _postgres_schema_url(POSTGRES_URL)


def make_settings(state_dir: Path, database_url: str | None = None, **extra: Any) -> HubSettings:
    return HubSettings(state_dir=state_dir, database_url=database_url or "", **extra)


def people_dataset(name: str = "people") -> CatalogueDataset:
    return CatalogueDataset(
        name=name,
        kind=hub_recipes.PEOPLE,
        rows=100,
        refreshed_at=0.0,
        columns=[
            ColumnSpec.model_validate(
                {"name": "id_number", "type": "string", "class": "identifier"}
            ),
            ColumnSpec.model_validate({"name": "area", "type": "string", "class": "public"}),
        ],
    )


class SimNode:
    """A node as the hub sees it: an agency name and an Ed25519 key that signs its requests."""

    def __init__(self, client: TestClient, agency: str, key: SigningKey | None = None) -> None:
        self.client = client
        self.agency = agency
        self.key = key or SigningKey.generate()

    def registration(self, min_cell: int = 3) -> dict[str, Any]:
        reg = NodeRegistration(
            agency=self.agency,
            public_key=self.key.public_key,
            version="test",
            min_cell=min_cell,
            datasets=[people_dataset()],
        )
        signed = SignedRegistration(
            registration=reg, signature=self.key.sign_value(reg.model_dump(mode="json"))
        )
        return signed.model_dump(mode="json", by_alias=True)

    def register(self, token: str = DEV_ENROLMENT_TOKEN, min_cell: int = 3) -> Any:
        return self.client.post(
            "/api/v1/nodes/register",
            json=self.registration(min_cell),
            headers={"Authorization": f"Bearer {token}"},
        )

    def signed(self, method: str, path: str, body: bytes = b"", **kw: Any) -> Any:
        headers = sign_request(self.key, self.agency, method, path, body)
        headers["Content-Type"] = "application/json"
        return self.client.request(method, path, content=body, headers=headers, **kw)

    def poll(self, wait: float = 0.0) -> list[SignedTask]:
        path = f"/api/v1/nodes/{self.agency}/tasks"
        response = self.signed("GET", path, params={"wait": wait} if wait else None)
        assert response.status_code == 200, response.text
        return [SignedTask.model_validate(t) for t in response.json()]

    def partial(
        self,
        signed_task: SignedTask,
        rows: list[list[Any]] | None = None,
        status: PartialStatus = PartialStatus.OK,
        reason: str | None = None,
        min_cell: int = 3,
    ) -> SignedPartial:
        task = signed_task.task
        partial = Partial(
            task_id=task.task_id,
            job_id=task.job_id,
            agency=self.agency,
            code_sha256=task.code_sha256,
            status=status,
            reason=reason,
            table=Table(columns=["area", "n"], rows=rows) if rows is not None else None,
            min_cell=min_cell,
            query_set_size=100,
            computed_at=time.time(),
        )
        return SignedPartial(
            partial=partial, signature=self.key.sign_value(partial.model_dump(mode="json"))
        )

    def answer(self, signed_partial: SignedPartial) -> Any:
        body = json.dumps(signed_partial.model_dump(mode="json")).encode()
        return self.signed("POST", f"/api/v1/nodes/{self.agency}/partials", body)


class Hub:
    """A running in-process hub (lifespan started) with helpers to add people and nodes."""

    def __init__(self, settings: HubSettings, client: TestClient) -> None:
        self.settings = settings
        self.client = client
        self.tokens: dict[str, str] = {}

    @property
    def services(self) -> Any:
        return self.client.app.state.services  # type: ignore[attr-defined]

    def person(self, name: str, role: str, agency: str | None = None) -> dict[str, str]:
        if name not in self.tokens:
            self.tokens[name] = create_user(self.settings, name, role, agency)
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def node(self, agency: str, key: SigningKey | None = None) -> SimNode:
        node = SimNode(self.client, agency, key)
        response = node.register()
        assert response.status_code == 200, response.text
        return node

    def submit(self, analyst: str = "ana", **body: Any) -> Any:
        body.setdefault("recipe", "count_by_area")
        return self.client.post("/api/v1/jobs", json=body, headers=self.person(analyst, "analyst"))

    def job(self, job_id: str, who: str = "ana", wait: float = 0.0) -> dict[str, Any]:
        params = {"wait": wait} if wait else None
        response = self.client.get(
            f"/api/v1/jobs/{job_id}", params=params, headers=self.person(who, "analyst")
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def audit_events(self) -> list[str]:
        response = self.client.get("/api/v1/audit", headers=self.person("aud", "auditor"))
        assert response.status_code == 200, response.text
        # People are created lazily by these helpers; their entries are noise here.
        return [e["event"] for e in response.json() if e["event"] != "user_created"]


def open_hub(settings: HubSettings, **client_kw: Any) -> Iterator[Hub]:
    app = create_app(settings, hub_recipes.registry())
    with TestClient(app, **client_kw) as client:
        yield Hub(settings, client)
    app.state.services.db.dispose()


#: ``with running_hub(settings) as hub:`` — for tests that need their own settings or a restart.
running_hub = contextmanager(open_hub)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    """A hub on SQLite (for the tests that are not about the store)."""
    yield from open_hub(make_settings(tmp_path / "hub"))


@pytest.fixture
def store_hub(tmp_path: Path, database_url: str) -> Iterator[Hub]:
    """A hub on each store backend (the shared store suite)."""
    yield from open_hub(make_settings(tmp_path / "hub", database_url))
