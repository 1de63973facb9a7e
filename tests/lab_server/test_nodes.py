"""Node enrolment and signed node requests."""

from __future__ import annotations

import json

from datalab.signing import SigningKey, sign_request
from tests.lab_server.conftest import Hub, SimNode


def test_registration_returns_the_hub_key_and_fills_the_catalogue(hub: Hub) -> None:
    node = SimNode(hub.client, "north")
    response = node.register()
    assert response.status_code == 200, response.text
    assert response.json()["hub_public_key"] == hub.client.get("/api/v1/hub").json()["public_key"]
    catalogue = hub.client.get("/api/v1/catalogue", headers=hub.person("ana", "analyst")).json()
    assert catalogue[0]["agency"] == "north" and catalogue[0]["status"] == "online"
    columns = catalogue[0]["datasets"][0]["columns"]
    assert columns[0] == {
        "name": "id_number",
        "type": "string",
        "class": "identifier",
        "description": "",
        "geo_level": None,
        "values": None,
    }


def test_wrong_enrolment_token_is_401(hub: Hub) -> None:
    response = SimNode(hub.client, "north").register(token="guess")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    missing = hub.client.post(
        "/api/v1/nodes/register", json=SimNode(hub.client, "n").registration()
    )
    assert missing.status_code == 401
    assert "registration_refused" in hub.audit_events()


def test_registration_signed_by_another_key_is_401(hub: Hub) -> None:
    node = SimNode(hub.client, "north")
    body = node.registration()
    body["signature"] = SigningKey.generate().sign_value(body["registration"])
    response = hub.client.post(
        "/api/v1/nodes/register",
        json=body,
        headers={"Authorization": "Bearer dev-enrolment-token"},
    )
    assert response.status_code == 401


def test_reregistration_with_the_same_key_is_fine_with_another_key_409(hub: Hub) -> None:
    node = hub.node("north")
    assert node.register().status_code == 200
    impostor = SimNode(hub.client, "north")
    response = impostor.register()
    assert response.status_code == 409
    assert "operator" in response.json()["error"]["message"]
    operator = hub.person("op", "operator")
    assert hub.client.delete("/api/v1/nodes/north", headers=operator).status_code == 200
    assert impostor.register().status_code == 200
    nodes = hub.client.get("/api/v1/nodes", headers=operator).json()
    assert [n["agency"] for n in nodes] == ["north"]
    assert set(nodes[0]) >= {"version", "last_seen", "key_fingerprint"}


def _tasks_request(hub: Hub, headers: dict[str, str], agency: str = "north") -> int:
    return hub.client.get(f"/api/v1/nodes/{agency}/tasks", headers=headers).status_code


def test_signed_requests_are_checked(hub: Hub) -> None:
    node = hub.node("north")
    hub.node("south")
    path = "/api/v1/nodes/north/tasks"
    good = sign_request(node.key, "north", "GET", path, b"")
    assert _tasks_request(hub, good) == 200
    assert _tasks_request(hub, {}) == 401
    bad = dict(good, **{"X-Datalab-Signature": "00" * 64})
    assert _tasks_request(hub, bad) == 401
    stale = sign_request(node.key, "north", "GET", path, b"")
    stale["X-Datalab-Time"] = str(float(stale["X-Datalab-Time"]) - 3600)
    assert _tasks_request(hub, stale) == 401
    other_key = sign_request(SigningKey.generate(), "north", "GET", path, b"")
    assert _tasks_request(hub, other_key) == 401
    unknown = sign_request(SigningKey.generate(), "ghost", "GET", path, b"")
    assert _tasks_request(hub, unknown) == 401
    # north signs correctly, but calls south's endpoint
    south_path = "/api/v1/nodes/south/tasks"
    wrong_agency = sign_request(node.key, "north", "GET", south_path, b"")
    assert _tasks_request(hub, wrong_agency, "south") == 403


def test_a_partial_body_must_match_its_signed_hash(hub: Hub) -> None:
    node = hub.node("north")
    hub.submit()
    (task,) = node.poll()
    body = json.dumps(node.partial(task, [["a", 20]]).model_dump(mode="json")).encode()
    path = "/api/v1/nodes/north/partials"
    headers = sign_request(node.key, "north", "POST", path, body)
    tampered = body.replace(b"20", b"99")
    response = hub.client.post(path, content=tampered, headers=headers)
    assert response.status_code == 401


def test_a_partial_for_another_nodes_task_is_403(hub: Hub) -> None:
    north, south = hub.node("north"), hub.node("south")
    hub.submit()
    (task,) = north.poll()
    # south answers north's task, signed properly as south
    forged = south.partial(task, [["a", 20]])
    assert south.answer(forged).status_code == 403
    # and a partial naming another agency than the signer is refused too
    partial = north.partial(task, [["a", 20]])
    assert south.answer(partial).status_code == 403


def test_a_partial_with_a_bad_signature_is_refused(hub: Hub) -> None:
    node = hub.node("north")
    hub.submit()
    (task,) = node.poll()
    partial = node.partial(task, [["a", 20]])
    partial = partial.model_copy(update={"signature": "00" * 64})
    assert node.answer(partial).status_code == 401


def test_node_long_poll_wakes_when_a_task_is_issued(hub: Hub) -> None:
    import threading
    import time

    node = hub.node("north")
    hub.person("ana", "analyst")
    timer = threading.Timer(0.2, lambda: hub.submit())
    started = time.monotonic()
    timer.start()
    tasks = node.poll(wait=5)
    elapsed = time.monotonic() - started
    timer.join()
    assert len(tasks) == 1
    assert elapsed < 2.0
