"""Approval requests at the hub (in-process): who may request, see, approve, reject and
revoke; and what the hub checks before it keeps and relays an agency-signed grant."""

from __future__ import annotations

import json
from typing import Any

from datalab.grants import new_grant, sign_grant, sign_revocation
from datalab.signing import SigningKey
from datalab.wire import AgencyApprovals, SignedApproval
from tests.lab_server.conftest import Hub, SimNode


def _setup(hub: Hub) -> tuple[SimNode, SigningKey, dict[str, Any]]:
    node = hub.node("north")
    agency_key = SigningKey.generate()
    body = json.dumps({"public_key": agency_key.public_key}).encode()
    assert node.signed("POST", "/api/v1/nodes/north/agency-key", body).status_code == 200
    response = hub.client.post(
        "/api/v1/approval-requests",
        json={
            "recipe": "count_by_area",
            "agencies": ["north"],
            "purpose": "test",
            "bounds": {"min_age": {"minimum": 18, "maximum": 65}},
        },
        headers=hub.person("ana", "analyst"),
    )
    assert response.status_code == 201, response.text
    return node, agency_key, response.json()


def _grant(request: dict[str, Any], key: SigningKey, **over: Any) -> SignedApproval:
    values: dict[str, Any] = {
        "agency": "north",
        "recipe": request["recipe"],
        "version": request["version"],
        "code_sha256": request["code_sha256"],
        "bounds": {"min_age": {"minimum": 21, "maximum": 65}},
        "approved_by": "adm",
        "request_id": request["request_id"],
    }
    values.update(over)
    return sign_grant(key, new_grant(**values))


def _upload(hub: Hub, request: dict[str, Any], signed: SignedApproval, who: str = "adm") -> Any:
    return hub.client.post(
        f"/api/v1/approval-requests/{request['request_id']}/approvals",
        json=signed.model_dump(mode="json"),
        headers=hub.person(who, "agency_admin", "north" if who == "adm" else "south"),
    )


def test_the_hub_checks_a_grant_before_keeping_and_relaying_it(hub: Hub) -> None:
    node, key, request = _setup(hub)
    forged = _upload(hub, request, _grant(request, SigningKey.generate()))
    assert forged.status_code == 400 and "not signed by agency north" in forged.text
    wider = _upload(hub, request, _grant(request, key, bounds={}))
    assert wider.status_code == 400 and "only narrow" in wider.text
    other_code = _upload(hub, request, _grant(request, key, code_sha256="ab" * 32))
    assert other_code.status_code == 400 and "the request is for" in other_code.text
    stranger = _upload(hub, request, _grant(request, key), who="eve")
    assert stranger.status_code == 403 and "own agency" in stranger.text

    good = _grant(request, key)
    accepted = _upload(hub, request, good)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["state"] == "approved"
    assert _upload(hub, request, good).status_code == 409  # the same grant twice

    relayed = node.signed("GET", "/api/v1/nodes/north/approvals")
    bundle = AgencyApprovals.model_validate(relayed.json())
    assert bundle.approvals == [good] and bundle.revocations == []

    # revocation: signed by the agency key, relayed too
    forged_rev = sign_revocation(SigningKey.generate(), good.grant, "adm")
    headers = hub.person("adm", "agency_admin", "north")
    response = hub.client.post(
        "/api/v1/revocations", json=forged_rev.model_dump(mode="json"), headers=headers
    )
    assert response.status_code == 400
    revocation = sign_revocation(key, good.grant, "adm", "done")
    response = hub.client.post(
        "/api/v1/revocations", json=revocation.model_dump(mode="json"), headers=headers
    )
    assert response.status_code == 200
    bundle = AgencyApprovals.model_validate(
        node.signed("GET", "/api/v1/nodes/north/approvals").json()
    )
    assert bundle.revocations == [revocation]
    events = hub.audit_events()
    assert events.count("approval_granted") == 1 and "approval_revoked" in events
    assert "agency_key_registered" in events and "approval_requested" in events


def test_who_sees_which_request(hub: Hub) -> None:
    _, _, request = _setup(hub)
    path = f"/api/v1/approval-requests/{request['request_id']}"
    assert hub.client.get(path, headers=hub.person("ana", "analyst")).status_code == 200
    assert hub.client.get(path, headers=hub.person("bob", "analyst")).status_code == 403
    assert hub.client.get(path, headers=hub.person("aud", "auditor")).status_code == 200
    north = hub.person("adm", "agency_admin", "north")
    assert hub.client.get(path, headers=north).status_code == 200
    south = hub.person("eve", "agency_admin", "south")
    assert hub.client.get(path, headers=south).status_code == 403
    assert hub.client.get("/api/v1/approval-requests", headers=south).json() == []
    operator = hub.person("op", "operator")
    assert hub.client.get(path, headers=operator).status_code == 403
    assert (
        hub.client.post(
            "/api/v1/approval-requests",
            json={"recipe": "count_by_area", "agencies": ["north"], "purpose": "x"},
            headers=operator,
        ).status_code
        == 403
    )


def test_a_node_that_never_reported_its_agency_key_cannot_be_approved_for(hub: Hub) -> None:
    hub.node("south")
    response = hub.client.post(
        "/api/v1/approval-requests",
        json={"recipe": "count_by_area", "agencies": ["south"], "purpose": "x"},
        headers=hub.person("ana", "analyst"),
    )
    request = response.json()
    signed = _grant(request, SigningKey.generate(), agency="south", bounds={})
    uploaded = hub.client.post(
        f"/api/v1/approval-requests/{request['request_id']}/approvals",
        json=signed.model_dump(mode="json"),
        headers=hub.person("sam", "agency_admin", "south"),
    )
    assert uploaded.status_code == 409 and "agency key" in uploaded.text


def test_bad_requests_say_what_is_wrong(hub: Hub) -> None:
    hub.node("north")
    headers = hub.person("ana", "analyst")
    cases = [
        ({"recipe": "nope", "agencies": ["north"], "purpose": "x"}, 404, "nope"),
        ({"recipe": "count_by_area", "agencies": [], "purpose": "x"}, 422, "at least one"),
        ({"recipe": "count_by_area", "agencies": ["north"], "purpose": " "}, 422, "purpose"),
        (
            {
                "recipe": "count_by_area",
                "agencies": ["north"],
                "purpose": "x",
                "bounds": {"min_age": 3},
            },
            422,
            "bounds.min_age",
        ),
    ]
    for body, status, words in cases:
        response = hub.client.post("/api/v1/approval-requests", json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        assert words in response.json()["error"]["message"]
