"""Bad input gets a clear 4xx and leaves nothing half-written; crashes leak nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from lab_server.db import Job, TaskRow
from tests.lab_server.conftest import Hub, make_settings, running_hub


def _no_jobs(hub: Hub) -> None:
    with hub.services.db.read() as session:
        assert session.execute(select(func.count()).select_from(Job)).scalar_one() == 0
        assert session.execute(select(func.count()).select_from(TaskRow)).scalar_one() == 0


def test_unknown_recipe_is_404(hub: Hub) -> None:
    hub.node("north")
    response = hub.submit(recipe="no_such_recipe")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "count_by_area" in response.json()["error"]["message"]
    _no_jobs(hub)
    assert "job_rejected" in hub.audit_events()


@pytest.mark.parametrize(
    ("params", "named"),
    [({"min_age": 500}, "min_age"), ({"nope": 1}, "nope"), ({"column": "zzz"}, "column")],
)
def test_bad_parameter_is_422_naming_it(hub: Hub, params: dict[str, Any], named: str) -> None:
    hub.node("north")
    response = hub.submit(params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_parameters"
    assert named in response.json()["error"]["message"]
    _no_jobs(hub)


def test_a_request_missing_a_field_is_422_naming_it(hub: Hub) -> None:
    response = hub.client.post(
        "/api/v1/jobs", json={"params": {}}, headers=hub.person("ana", "analyst")
    )
    assert response.status_code == 422
    assert "recipe" in response.json()["error"]["message"]
    _no_jobs(hub)


def test_no_node_holding_data_is_422(hub: Hub) -> None:
    assert hub.submit().status_code == 422
    _no_jobs(hub)


def test_malformed_json_is_400(hub: Hub) -> None:
    response = hub.client.post(
        "/api/v1/jobs",
        content=b'{"recipe": ',
        headers={**hub.person("ana", "analyst"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "bad_request", "message": "malformed JSON body"}}
    _no_jobs(hub)


def test_oversized_body_is_413_with_the_limit(tmp_path: Any) -> None:
    with running_hub(make_settings(tmp_path / "hub", max_body_bytes=1000)) as hub:
        big = {"recipe": "count_by_area", "params": {"x": "y" * 2000}}
        response = hub.client.post("/api/v1/jobs", json=big, headers=hub.person("ana", "analyst"))
        assert response.status_code == 413
        assert "1000" in response.json()["error"]["message"]
        _no_jobs(hub)


def test_body_limit_counts_streamed_bytes_not_just_content_length(tmp_path: Any) -> None:
    """A chunked body without Content-Length is cut off at the limit too."""
    with running_hub(make_settings(tmp_path / "hub", max_body_bytes=1000)) as hub:
        app = hub.client.app
        sent: list[dict[str, Any]] = []
        chunks = [b"x" * 600, b"x" * 600, b"x" * 600]

        async def receive() -> dict[str, Any]:
            body = chunks.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(chunks)}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "path": "/api/v1/jobs",
            "raw_path": b"/api/v1/jobs",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json")],
            "scheme": "http",
            "server": ("testserver", 80),
            "client": ("testclient", 1),
            "root_path": "",
        }
        asyncio.run(app(scope, receive, send))  # type: ignore[operator]
        assert sent[0]["status"] == 413
        assert len(chunks) == 1  # stopped reading once past the limit
        assert "1000" in json.loads(sent[1]["body"])["error"]["message"]


def test_bad_or_missing_token_is_401(hub: Hub) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = hub.client.post("/api/v1/jobs", json={"recipe": "x"}, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    _no_jobs(hub)


def test_unknown_route_and_job_are_404_in_the_error_shape(hub: Hub) -> None:
    assert hub.client.get("/api/v1/nope").json()["error"]["code"] == "not_found"
    response = hub.client.get("/api/v1/jobs/nope", headers=hub.person("ana", "analyst"))
    assert response.status_code == 404


def test_an_unexpected_error_is_a_bare_500(tmp_path: Any) -> None:
    with running_hub(make_settings(tmp_path / "hub"), raise_server_exceptions=False) as hub:
        node = hub.node("north")

        def explode(*_: Any, **__: Any) -> None:
            raise RuntimeError("secret-row-110101199001011234")

        hub.services.jobs.list = explode
        response = hub.client.get("/api/v1/jobs", headers=hub.person("ana", "analyst"))
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        assert "secret" not in response.text and "Traceback" not in response.text

        # a recipe crashing in combine fails the job with a generic message
        job_id = hub.submit(recipe="broken_combine").json()["job_id"]
        (task,) = node.poll()
        assert node.answer(node.partial(task, [["a", 20]])).status_code == 200
        view = hub.job(job_id)
        assert view["state"] == "failed"
        assert "secret" not in json.dumps(view)
