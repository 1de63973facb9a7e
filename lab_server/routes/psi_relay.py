"""PSI relay endpoints: the two nodes of a matching job exchange openmined-psi messages."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from datalab.wire import PsiMessage, PsiPosted, PsiProgress
from lab_server.deps import Hub, SignedNode
from lab_server.notify import job_key
from lab_server.psi_relay import psi_key

router = APIRouter(tags=["psi"])


@router.post("/nodes/{agency}/psi/{task_id}/messages")
def post_message(
    agency: str, task_id: str, body: PsiMessage, node: SignedNode, hub: Hub
) -> PsiPosted:
    """Pass one message from this node's task to the other task of its matching job."""
    return PsiPosted(seq=hub.psi.post(node.agency, task_id, body))


@router.post("/nodes/{agency}/psi/{task_id}/progress", status_code=204)
def report_progress(
    agency: str, task_id: str, body: PsiProgress, node: SignedNode, hub: Hub
) -> None:
    """The asking node's chunks done / total; the analyst sees it on the job while it runs."""
    job_id = hub.psi.report(node.agency, task_id, body)
    hub.notifier.notify(job_key(job_id))


@router.get("/nodes/{agency}/psi/{task_id}/messages")
async def take_messages(
    agency: str,
    task_id: str,
    node: SignedNode,
    hub: Hub,
    after: Annotated[int, Query(ge=0, description="the last seq already received")] = 0,
    wait: Annotated[float, Query(ge=0, description="long-poll seconds (capped)")] = 0.0,
) -> list[PsiMessage]:
    """Messages for this task after ``after``, waiting up to ``wait`` seconds for one."""
    deadline = time.monotonic() + min(wait, hub.settings.long_poll_max_s)
    key = psi_key(task_id)
    while True:
        ticket = hub.notifier.ticket(key)
        messages = await run_in_threadpool(hub.psi.take, node.agency, task_id, after)
        remaining = deadline - time.monotonic()
        if messages or remaining <= 0:
            return messages
        await hub.notifier.wait(key, ticket, remaining)
