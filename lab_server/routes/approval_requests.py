"""Approval requests (analysts ask, agency admins decide) and the grant relay to nodes."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from datalab.wire import (
    AgencyApprovals,
    AgencyDecision,
    AgencyKey,
    ApprovalRequestIn,
    ApprovalRequestView,
    ApprovalReview,
    Rejection,
    SignedApproval,
    SignedRevocation,
)
from lab_server.deps import CurrentUser, Hub, SignedNode
from lab_server.permissions import Resource
from lab_server.review import review

router = APIRouter(tags=["approvals"])


@router.post("/approval-requests", status_code=201)
def request_approval(body: ApprovalRequestIn, user: CurrentUser, hub: Hub) -> ApprovalRequestView:
    return hub.approvals.request(user, body)


@router.get("/approval-requests")
def list_requests(user: CurrentUser, hub: Hub) -> list[ApprovalRequestView]:
    return hub.approvals.list(user)


@router.get("/approval-requests/{request_id}")
def get_request(request_id: str, user: CurrentUser, hub: Hub) -> ApprovalRequestView:
    return hub.approvals.get(user, request_id)


@router.get("/approval-requests/{request_id}/review")
def review_request(request_id: str, user: CurrentUser, hub: Hub) -> ApprovalReview:
    """Code, manifest and mock output, for an admin of an agency the request involves."""
    return review(hub, user, request_id)


@router.post("/approval-requests/{request_id}/approvals", status_code=201)
def approve(request_id: str, body: SignedApproval, user: CurrentUser, hub: Hub) -> AgencyDecision:
    """Upload a grant signed with the agency key (the hub holds no agency key)."""
    return hub.approvals.approve(user, request_id, body)


@router.post("/approval-requests/{request_id}/rejections")
def reject(request_id: str, body: Rejection, user: CurrentUser, hub: Hub) -> AgencyDecision:
    return hub.approvals.reject(user, request_id, body.reason)


@router.post("/revocations")
def revoke(body: SignedRevocation, user: CurrentUser, hub: Hub) -> dict[str, bool]:
    hub.approvals.revoke(user, body)
    return {"revoked": True}


@router.get("/approvals/{approval_id}")
def get_grant(approval_id: str, user: CurrentUser, hub: Hub) -> SignedApproval:
    grant = hub.approvals.grant(approval_id)
    hub.gate.ensure_allowed(user, "approve-recipe", Resource(agency=grant.grant.agency))
    return grant


@router.get("/nodes/{agency}/approvals")
async def node_approvals(agency: str, node: SignedNode, hub: Hub) -> AgencyApprovals:
    """Every signed grant and revocation for this node's agency (the node verifies each)."""
    return await run_in_threadpool(hub.approvals.for_node, node.agency)


@router.post("/nodes/{agency}/agency-key")
async def node_agency_key(
    agency: str, body: AgencyKey, node: SignedNode, hub: Hub
) -> dict[str, bool]:
    await run_in_threadpool(hub.approvals.set_agency_key, node.agency, body.public_key)
    return {"accepted": True}
