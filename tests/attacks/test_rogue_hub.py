"""A compromised or impersonated hub tries to make a real node run what its agency never
approved. The node must refuse every such task on its own.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from datalab.signing import SigningKey, verify_value
from datalab.wire import PartialStatus, SignedPartial, SignedTask, Task
from datalab_cli.local_lab import LocalLab
from node_agent.grant_store import ApprovalStore
from recipes.contract import validate_params
from recipes.registry import default_registry
from tests.support.identifiers import CityIdentifiers
from tests.support.rogue_hub import RogueHub

AGENCY = "civil_affairs"


@pytest.fixture(scope="module")
def rogue_pair(
    city: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RogueHub, LocalLab]]:
    hub = RogueHub(SigningKey.generate())
    lab = LocalLab(city_dir=city, state_dir=tmp_path_factory.mktemp("rogue"))
    lab.node_hub_url = hub.url
    lab.approve_all(AGENCY)  # the agency approves key_groups only (its data serves nothing else)
    lab.start_node(AGENCY)
    try:
        hub.wait_registered()
        yield hub, lab
    finally:
        lab.stop()
        hub.close()


@pytest.fixture(scope="module")
def rogue(rogue_pair: tuple[RogueHub, LocalLab]) -> RogueHub:
    return rogue_pair[0]


@pytest.fixture(scope="module")
def rogue_lab(rogue_pair: tuple[RogueHub, LocalLab]) -> LocalLab:
    return rogue_pair[1]


def _task(
    recipe: str,
    params: dict[str, Any],
    *,
    code_sha256: str | None = None,
    dataset: str = "benefits",
    expires_in: float = 60.0,
) -> Task:
    r = default_registry().get(recipe)
    now = time.time()
    return Task(
        task_id=uuid.uuid4().hex,
        job_id=uuid.uuid4().hex,
        agency=AGENCY,
        dataset=dataset,
        recipe=r.name,
        version=r.version,
        code_sha256=code_sha256 or r.code_sha256(),
        params=r.validate(params) if code_sha256 is None else params,
        issued_at=now,
        expires_at=now + expires_in,
        nonce=secrets.token_hex(16),
    )


def _signed(task: Task, key: SigningKey) -> SignedTask:
    return SignedTask(task=task, signature=key.sign_value(task.model_dump(mode="json")))


def _assert_refused(answer: SignedPartial | None, rogue: RogueHub, *words: str) -> None:
    if answer is None:
        return  # silently dropped: also a refusal (nothing ran, nothing released)
    node_key = rogue.registrations[0].registration.public_key
    verify_value(node_key, answer.partial.model_dump(mode="json"), answer.signature)
    assert answer.partial.status is PartialStatus.REFUSED, answer.partial
    assert answer.partial.table is None
    reason = (answer.partial.reason or "").lower()
    assert any(w in reason for w in words), reason


KEY_GROUPS = {"group": "elderly", "level": "street"}


def test_an_honest_task_runs_so_the_rig_is_real(rogue: RogueHub) -> None:
    answer = rogue.send(_signed(_task("key_groups", KEY_GROUPS), rogue.key))
    assert answer is not None
    assert answer.partial.status is PartialStatus.OK
    assert answer.partial.table is not None and answer.partial.table.rows


def test_node_refuses_a_recipe_hash_its_agency_did_not_approve(rogue: RogueHub) -> None:
    task = _task("key_groups", dict(KEY_GROUPS, group="elderly"), code_sha256="0" * 64)
    _assert_refused(rogue.send(_signed(task, rogue.key)), rogue, "sha256", "approved", "hash")


def test_node_refuses_a_recipe_its_agency_never_approved(rogue: RogueHub) -> None:
    task = _task("aggregate", {"kind": "benefit_recipients", "group_by": ["benefit"]})
    _assert_refused(rogue.send(_signed(task, rogue.key)), rogue, "not approved")


def test_node_refuses_a_task_not_signed_by_its_hub(rogue: RogueHub) -> None:
    task = _task("key_groups", KEY_GROUPS)
    _assert_refused(rogue.send(_signed(task, SigningKey.generate())), rogue, "signature")


def test_node_refuses_a_tampered_task(rogue: RogueHub) -> None:
    signed = _signed(_task("key_groups", KEY_GROUPS), rogue.key)
    tampered = signed.model_copy(
        update={
            "task": signed.task.model_copy(
                update={"params": dict(signed.task.params, level="grid")}
            )
        }
    )
    _assert_refused(rogue.send(tampered), rogue, "signature")


def test_node_refuses_a_replayed_task(rogue: RogueHub) -> None:
    signed = _signed(_task("key_groups", KEY_GROUPS), rogue.key)
    first = rogue.send(signed)
    assert first is not None and first.partial.status is PartialStatus.OK
    _assert_refused(rogue.send(signed), rogue, "replay", "already", "seen")


def test_node_refuses_an_expired_task(rogue: RogueHub) -> None:
    task = _task("key_groups", KEY_GROUPS, expires_in=-1.0)
    _assert_refused(rogue.send(_signed(task, rogue.key)), rogue, "expired")


def test_node_refuses_to_group_by_an_identifier_even_for_an_approved_recipe(
    rogue: RogueHub, rogue_lab: LocalLab, city_identifiers: CityIdentifiers
) -> None:
    """The hub validates parameters, but a compromised hub need not: the node's own column
    policy must stop a plan that would output identifiers, even under a valid approval."""
    r = default_registry().get("aggregate")
    ApprovalStore(rogue_lab.node_state(AGENCY), AGENCY).approve(
        r.name, r.version, r.code_sha256(), approved_by="test"
    )
    for params in (
        {"kind": "benefit_recipients", "group_by": ["id_number"]},
        {"kind": "benefit_recipients", "group_by": ["name"]},
        {"kind": "benefit_recipients", "filters": [["id_number", "not_null", None]]},
    ):
        now = time.time()
        task = Task(
            task_id=uuid.uuid4().hex,
            job_id=uuid.uuid4().hex,
            agency=AGENCY,
            dataset="benefits",
            recipe=r.name,
            version=r.version,
            code_sha256=r.code_sha256(),
            params=validate_params(r.manifest.params, params),
            issued_at=now,
            expires_at=now + 60,
            nonce=secrets.token_hex(16),
        )
        answer = rogue.send(_signed(task, rogue.key))
        _assert_refused(answer, rogue, "identifier")
        if answer is not None:
            assert city_identifiers.leaks(answer.model_dump_json().encode()) == set()
