"""End-to-end speed of a job in process: 4 nodes long-polling, a client waiting on the job.

Measures client POST → nodes wake, answer → released → the client's long-poll returns, over
real ASGI calls (httpx ASGITransport) with the hub's lifespan running.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from datalab.signing import SigningKey, sign_request
from datalab.wire import Partial, PartialStatus, SignedPartial, SignedTask, Table
from datalab_cli.hub_command import create_user
from lab_server.app import create_app
from tests.lab_server import hub_recipes
from tests.lab_server.conftest import SimNode, make_settings

AGENCIES = ["a1", "a2", "a3", "a4"]
JOBS = 15


async def _node(
    client: httpx.AsyncClient, agency: str, key: SigningKey, stop: asyncio.Event
) -> None:
    path = f"/api/v1/nodes/{agency}/tasks"
    while not stop.is_set():
        headers = sign_request(key, agency, "GET", path, b"")
        response = await client.get(path, params={"wait": 2}, headers=headers)
        for item in response.json():
            task = SignedTask.model_validate(item).task
            partial = Partial(
                task_id=task.task_id,
                job_id=task.job_id,
                agency=agency,
                code_sha256=task.code_sha256,
                status=PartialStatus.OK,
                table=Table(columns=["area", "n"], rows=[["x", 20], ["y", 30]]),
                min_cell=3,
                computed_at=time.time(),
            )
            signed = SignedPartial(
                partial=partial, signature=key.sign_value(partial.model_dump(mode="json"))
            )
            body = json.dumps(signed.model_dump(mode="json")).encode()
            ppath = f"/api/v1/nodes/{agency}/partials"
            headers = sign_request(key, agency, "POST", ppath, body)
            headers["Content-Type"] = "application/json"
            assert (await client.post(ppath, content=body, headers=headers)).status_code == 200


async def _run(tmp_path: Path) -> list[float]:
    settings = make_settings(tmp_path / "hub")
    app = create_app(settings, hub_recipes.registry())
    token = create_user(settings, "ana", "analyst")
    analyst = {"Authorization": f"Bearer {token}"}
    keys = {a: SigningKey.generate() for a in AGENCIES}
    transport = httpx.ASGITransport(app=app)
    timings: list[float] = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://hub") as client,
    ):
        for agency, key in keys.items():
            body = SimNode(None, agency, key).registration()  # type: ignore[arg-type]
            reg = await client.post(
                "/api/v1/nodes/register",
                json=body,
                headers={"Authorization": "Bearer dev-enrolment-token"},
            )
            assert reg.status_code == 200
        stop = asyncio.Event()
        nodes = [asyncio.create_task(_node(client, a, k, stop)) for a, k in keys.items()]
        await asyncio.sleep(0.1)  # let the nodes start polling
        for _ in range(JOBS):
            started = time.perf_counter()
            response = await client.post(
                "/api/v1/jobs", json={"recipe": "count_by_area"}, headers=analyst
            )
            view: dict[str, Any] = response.json()
            while view["state"] not in ("released", "failed", "refused"):
                view = (
                    await client.get(
                        f"/api/v1/jobs/{view['job_id']}", params={"wait": 5}, headers=analyst
                    )
                ).json()
            timings.append(time.perf_counter() - started)
            assert view["state"] == "released", view
            assert view["result"]["rows"] == [["x", 80], ["y", 120]]
        stop.set()
        await asyncio.gather(*nodes)
    app.state.services.db.dispose()
    return timings


def test_a_four_node_job_completes_quickly(tmp_path: Path) -> None:
    timings = asyncio.run(_run(tmp_path))
    p50 = statistics.median(timings)
    print(f"4-node job latency: p50 {p50 * 1000:.1f} ms, max {max(timings) * 1000:.1f} ms")
    # The target is well under 150 ms on a quiet machine (see the report printed above); the
    # bound here only catches a regression to sleep-polling without flaking on a busy machine.
    assert p50 < 0.4
