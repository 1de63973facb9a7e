"""The permissions table, every action × every role, and its enforcement over HTTP."""

from __future__ import annotations

import pytest

from lab_server.permissions import ACTIONS, Actor, Resource, Role, decide
from tests.lab_server.conftest import Hub

A, AA, AU, OP = Role.ANALYST, Role.AGENCY_ADMIN, Role.AUDITOR, Role.OPERATOR
#: what each role may do on its own things (owner / agency matching the actor).
EXPECTED: dict[str, set[Role]] = {
    "read-catalogue": {A, AA, AU, OP},
    "list-recipes": {A, AA, AU, OP},
    "run-job": {A},
    "read-own-job": {A, AU},
    "read-any-job": {AU},
    "read-audit": {AU},
    "manage-users": {OP},
    "manage-nodes": {OP},
    "list-nodes": {OP, AU},
    "approve-recipe": {AA},
    "read-privacy": {A, AA, AU, OP},
    "set-privacy": {AA},
    "request-approval": {A},
    "read-own-request": {A, AU},
    "read-any-request": {AU},
}
#: the same on someone else's things (another owner, another agency): scoped actions shrink.
EXPECTED_FOREIGN: dict[str, set[Role]] = dict(
    EXPECTED,
    **{
        "read-own-job": {AU},
        "read-own-request": {AU},
        "approve-recipe": set(),
        "set-privacy": set(),
    },
)


def test_the_matrix_covers_every_action() -> None:
    assert set(EXPECTED) == set(ACTIONS)


@pytest.mark.parametrize("action", sorted(EXPECTED))
@pytest.mark.parametrize("role", list(Role))
def test_matrix(action: str, role: Role) -> None:
    actor = Actor(name="pat", role=role, agency="north")
    own = Resource(owner="pat", agency="north")
    decision = decide(actor, action, own)
    assert decision.allowed is (role in EXPECTED[action]), decision.reason
    assert decision.reason


@pytest.mark.parametrize("action", sorted(EXPECTED_FOREIGN))
@pytest.mark.parametrize("role", list(Role))
def test_matrix_on_someone_elses_things(action: str, role: Role) -> None:
    actor = Actor(name="pat", role=role, agency="north")
    foreign = Resource(owner="kim", agency="south")
    decision = decide(actor, action, foreign)
    assert decision.allowed is (role in EXPECTED_FOREIGN[action]), decision.reason
    assert decision.reason


def test_ownership_and_agency_scopes() -> None:
    analyst = Actor(name="pat", role=A)
    assert not decide(analyst, "read-own-job", Resource(owner="someone")).allowed
    auditor = Actor(name="aud", role=AU)
    assert decide(auditor, "read-own-job", Resource(owner="someone")).allowed
    admin = Actor(name="adm", role=AA, agency="north")
    assert decide(admin, "approve-recipe", Resource(agency="north")).allowed
    refusal = decide(admin, "approve-recipe", Resource(agency="south"))
    assert not refusal.allowed and "own agency" in refusal.reason
    assert not decide(analyst, "no-such-action").allowed


def test_refusals_are_403_with_the_reason_and_audited(hub: Hub) -> None:
    analyst = hub.person("ana", "analyst")
    response = hub.client.get("/api/v1/audit", headers=analyst)
    assert response.status_code == 403
    assert "auditor" in response.json()["error"]["message"]
    auditor = hub.person("aud", "auditor")
    entries = hub.client.get("/api/v1/audit", headers=auditor).json()
    refused = [e for e in entries if e["event"] == "access_refused"]
    assert refused[0]["actor"] == "ana" and refused[0]["data"]["action"] == "read-audit"
    assert hub.client.post("/api/v1/jobs", json={"recipe": "x"}, headers=auditor).status_code == 403


def test_jobs_are_read_by_their_analyst_and_auditors_only(hub: Hub) -> None:
    hub.node("north")
    job_id = hub.submit("ana").json()["job_id"]
    other = hub.person("bob", "analyst")
    assert hub.client.get(f"/api/v1/jobs/{job_id}", headers=other).status_code == 403
    assert hub.client.get("/api/v1/jobs", headers=other).json() == []
    auditor = hub.person("aud", "auditor")
    assert hub.client.get(f"/api/v1/jobs/{job_id}", headers=auditor).status_code == 200
    assert len(hub.client.get("/api/v1/jobs", headers=auditor).json()) == 1
    operator = hub.person("op", "operator")
    assert hub.client.get("/api/v1/jobs", headers=operator).status_code == 403


def test_operator_creates_people_over_http(hub: Hub) -> None:
    operator = hub.person("op", "operator")
    response = hub.client.post(
        "/api/v1/users", json={"name": "eve", "role": "analyst"}, headers=operator
    )
    assert response.status_code == 201
    token = response.json()["token"]
    me = hub.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert me == {"name": "eve", "role": "analyst", "agency": None}
    again = hub.client.post(
        "/api/v1/users", json={"name": "eve", "role": "analyst"}, headers=operator
    )
    assert again.status_code == 409
    bad = hub.client.post("/api/v1/users", json={"name": "x", "role": "king"}, headers=operator)
    assert bad.status_code == 422 and "role" in bad.json()["error"]["message"]
    analyst = hub.person("ana", "analyst")
    refused = hub.client.post(
        "/api/v1/users", json={"name": "z", "role": "operator"}, headers=analyst
    )
    assert refused.status_code == 403
