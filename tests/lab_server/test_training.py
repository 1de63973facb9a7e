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


class StubTrainer:
    """Stands in for the Flower run (covered end to end in tests/e2e/test_federated.py): here
    only what job creation does before a run starts is under test."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, dict]] = []

    def ensure_available(self) -> None:
        return None

    def submit(self, job_id: str, recipe: object, params: dict, targets: list) -> None:
        self.submitted.append((job_id, params))


def test_a_dp_training_job_debits_epsilon_from_every_district_dataset(hub: Hub) -> None:
    from datalab.wire import NodeRegistration, SignedRegistration
    from tests.recipes.test_fl_logistic import outcomes

    for agency in ("district_1", "district_2"):
        node = SimNode(hub.client, agency)
        reg = NodeRegistration(
            agency=agency,
            public_key=node.key.public_key,
            version="test",
            min_cell=3,
            datasets=[outcomes()],
        )
        signed = SignedRegistration(
            registration=reg,
            signature=node.key.sign_value(reg.model_dump(mode="json", by_alias=True)),
        )
        response = hub.client.post(
            "/api/v1/nodes/register",
            content=signed.model_dump_json(by_alias=True).encode(),
            headers={
                "Authorization": "Bearer dev-enrolment-token",
                "Content-Type": "application/json",
            },
        )
        assert response.status_code == 200, response.text
    stub = StubTrainer()
    hub.services.jobs.trainer = stub
    response = hub.submit(recipe="fl_logistic", params={"rounds": 1, "epsilon": 0.5})
    assert response.status_code == 202, response.text
    assert [p["epsilon"] for _, p in stub.submitted] == [0.5]
    assert response.json()["tasks"] == []  # nodes take part through Flower, not tasks
    budget = hub.client.get("/api/v1/privacy/budget", headers=hub.person("ana", "analyst"))
    spent = {b["scope"]: b["spent"] for b in budget.json()}
    assert spent == {
        "dataset:district_1/verification_outcomes": 0.5,
        "dataset:district_2/verification_outcomes": 0.5,
    }
    too_much = hub.submit(recipe="fl_logistic", params={"epsilon": 5.0})
    assert too_much.status_code == 422  # above the lab's largest epsilon per query
    assert len(stub.submitted) == 1
