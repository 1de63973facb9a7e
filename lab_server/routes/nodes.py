"""Node endpoints: enrolment, task long-poll, partial answers; node listing for people."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from datalab.wire import RegistrationAccepted, SignedPartial, SignedRegistration, SignedTask
from lab_server.auth import bearer_token
from lab_server.deps import CurrentUser, Hub, SignedNode
from lab_server.notify import node_key

router = APIRouter(tags=["nodes"])


@router.post("/nodes/register")
def register(body: SignedRegistration, request: Request, hub: Hub) -> RegistrationAccepted:
    return hub.nodes.register(bearer_token(request), body)


@router.get("/nodes/{agency}/tasks")
async def take_tasks(
    agency: str,
    node: SignedNode,
    hub: Hub,
    wait: Annotated[float, Query(ge=0, description="long-poll seconds (capped)")] = 0.0,
) -> list[SignedTask]:
    """Tasks for this node, waiting up to ``wait`` seconds for one to be issued."""
    deadline = time.monotonic() + min(wait, hub.settings.long_poll_max_s)
    key = node_key(node.agency)
    while True:
        ticket = hub.notifier.ticket(key)
        tasks = await run_in_threadpool(hub.nodes.take_tasks, node.agency)
        remaining = deadline - time.monotonic()
        if tasks or remaining <= 0:
            return tasks
        await hub.notifier.wait(key, ticket, remaining)


@router.post("/nodes/{agency}/partials")
def post_partial(
    agency: str,
    body: SignedPartial,
    node: SignedNode,
    hub: Hub,
    since: Annotated[int, Query(ge=0, description="tree size of the node's last checkpoint")] = 0,
) -> dict[str, Any]:
    """Take a signed partial; answer with the audit receipt the node checks and keeps."""
    hub.jobs.accept_partial(node.agency, node.public_key, body)
    receipt = hub.transparency.receipt(node.agency, body.partial.task_id, since)
    return {"accepted": True, "receipt": receipt.model_dump(mode="json")}


@router.get("/nodes")
def list_nodes(user: CurrentUser, hub: Hub) -> list[dict[str, Any]]:
    hub.gate.ensure_allowed(user, "list-nodes")
    return hub.nodes.list()


@router.delete("/nodes/{agency}")
def remove_node(agency: str, user: CurrentUser, hub: Hub) -> dict[str, bool]:
    """Forget a node and its pinned key, so the agency can enrol again with a new key."""
    hub.gate.ensure_allowed(user, "manage-nodes")
    hub.nodes.remove(user.name, agency)
    return {"removed": True}
