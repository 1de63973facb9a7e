"""Federated training endpoints: a training job's rounds, and the nodes' refusal reports."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from datalab.wire import FlowerRefusal, TrainingView
from lab_server.deps import CurrentUser, Hub, SignedNode
from lab_server.notify import job_key

router = APIRouter(tags=["training"])


@router.get("/jobs/{job_id}/training")
async def training(
    job_id: str,
    user: CurrentUser,
    hub: Hub,
    wait: Annotated[float, Query(ge=0, description="long-poll seconds (capped)")] = 0.0,
    seen: Annotated[int, Query(ge=0, description="rounds the caller already has")] = 0,
) -> TrainingView:
    """A training job's aggregate metrics per round; with ``wait``, returns once there are more
    than ``seen`` rounds or the job has ended (for a progress bar per round)."""
    deadline = time.monotonic() + min(wait, hub.settings.long_poll_max_s)
    key = job_key(job_id)
    while True:
        ticket = hub.notifier.ticket(key)
        job = await run_in_threadpool(hub.jobs.get, user, job_id)  # checks who may read it
        view = await run_in_threadpool(hub.trainer.view, job_id, job.state)
        remaining = deadline - time.monotonic()
        if job.state.final or len(view.rounds) > seen or remaining <= 0:
            return view
        await hub.notifier.wait(key, ticket, remaining)


@router.post("/nodes/{agency}/flower/refusals", status_code=204)
def refusal(agency: str, body: FlowerRefusal, node: SignedNode, hub: Hub) -> None:
    """A node's gate refused a Flower app (hash not approved): recorded in the audit log."""
    hub.trainer.record_refusal(node.agency, body)
