"""Jobs: submit, read (long-poll until something changes), list."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from datalab.wire import JobRequest, JobView
from lab_server.deps import CurrentUser, Hub
from lab_server.jobs import fingerprint
from lab_server.notify import job_key
from lab_server.permissions import Actor
from lab_server.services import Services

router = APIRouter(tags=["jobs"])


@router.post("/jobs", status_code=202)
def submit(body: JobRequest, user: CurrentUser, hub: Hub) -> JobView:
    return hub.jobs.create(user, body)


@router.get("/jobs")
def list_jobs(user: CurrentUser, hub: Hub) -> list[JobView]:
    return hub.jobs.list(user)


@router.get("/jobs/{job_id}")
async def get_job(
    job_id: str,
    user: CurrentUser,
    hub: Hub,
    wait: Annotated[float, Query(ge=0, description="long-poll seconds (capped)")] = 0.0,
    until: Annotated[
        Literal["change", "final"],
        Query(description="wake on any change (for progress), or only when the job ends"),
    ] = "change",
) -> JobView:
    """The job; with ``wait``, returns as soon as its state or a task's state changes (or, with
    ``until=final``, only once it is released, failed or refused: fewer round trips)."""
    deadline = time.monotonic() + min(wait, hub.settings.long_poll_max_s)
    key = job_key(job_id)
    ticket = hub.notifier.ticket(key)
    view = await run_in_threadpool(_with_progress, hub, user, job_id)
    first = fingerprint(view)
    while not view.state.final and (until == "final" or fingerprint(view) == first):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if not await hub.notifier.wait(key, ticket, remaining):
            break
        ticket = hub.notifier.ticket(key)
        view = await run_in_threadpool(_with_progress, hub, user, job_id)
    return view


def _with_progress(hub: Services, user: Actor, job_id: str) -> JobView:
    """The job as ``jobs.get`` shows it, plus a running match's progress (counts only)."""
    view = hub.jobs.get(user, job_id)
    if not view.state.final:
        view.progress = hub.psi.progress(job_id)
    return view
