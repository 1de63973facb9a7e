"""The hub's training side without Flower processes: a hub with no SuperLink refuses training
jobs cleanly, refusal reports must come signed from a registered node, and production refuses
an insecure SuperLink."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from datalab.wire import FlowerRefusal
from lab_server.app import create_app
from lab_server.settings import HubSettings
from recipes.fl_logistic import FederatedLogistic
from recipes.registry import RecipeRegistry
from tests.lab_server.conftest import Hub, SimNode, make_settings


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    settings = make_settings(tmp_path)
    app = create_app(settings, RecipeRegistry([FederatedLogistic()]))
    with TestClient(app) as client:
        yield Hub(settings, client)
    app.state.services.db.dispose()


def test_a_hub_without_a_superlink_refuses_training_and_writes_no_job(hub: Hub) -> None:
    response = hub.submit(recipe="fl_logistic", params={"rounds": 2})
    assert response.status_code == 409
    assert "no Flower SuperLink" in response.json()["error"]["message"]
    listed = hub.client.get("/api/v1/jobs", headers=hub.person("ana", "analyst"))
    assert listed.json() == []
    assert hub.audit_events()[-1] == "job_rejected"


def test_refusal_reports_must_be_signed_by_the_registered_node(hub: Hub) -> None:
    node = hub.node("district_1")
    assert node.register().status_code == 200
    path = "/api/v1/nodes/district_1/flower/refusals"
    refusal = FlowerRefusal(run_id="42", fab_sha256="ab" * 32, reason="not approved", at=0.0)
    body = refusal.model_dump_json().encode()
    unsigned = hub.client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    other = SimNode(hub.client, "district_2")  # never registered: its key is unknown
    assert other.signed("POST", "/api/v1/nodes/district_2/flower/refusals", body).status_code == 401
    assert node.signed("POST", path, body).status_code == 204
    entries = hub.client.get("/api/v1/audit", headers=hub.person("aud", "auditor")).json()
    refused = [e for e in entries if e["event"] == "flower_app_refused"]
    assert len(refused) == 1
    assert refused[0]["actor"] == "district_1"
    assert refused[0]["data"]["fab_sha256"] == "ab" * 32
    assert refused[0]["data"]["job_id"] is None  # no training job has that run


def test_production_refuses_an_insecure_superlink(tmp_path: Path) -> None:
    base = {"state_dir": tmp_path, "environment": "production", "enrolment_token": "s" * 32}
    with pytest.raises(ValueError, match="TLS"):
        HubSettings(**base, flower=True)
    certs = {
        "flower_ssl_ca_certfile": tmp_path / "ca.crt",
        "flower_ssl_certfile": tmp_path / "s.crt",
        "flower_ssl_keyfile": tmp_path / "s.key",
    }
    with pytest.raises(ValueError, match="authenticate SuperNodes"):
        HubSettings(**base, flower=True, **certs)
    assert HubSettings(**base, flower=True, flower_supernode_auth=True, **certs).flower_tls
