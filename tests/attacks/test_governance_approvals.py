"""A compromised hub tries to pass off approvals the agency never signed, against REAL node
processes: a forged grant, and another agency's genuine grant replayed. The node refuses to
store either, logs the refusal in its own signed log, and the refusal reaches the hub's audit
log through the task's public reason.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator

import pytest

from datalab.client import Lab
from datalab.errors import JobRefused
from datalab.grants import agency_key, new_grant, sign_grant
from datalab.signing import SigningKey
from datalab.wire import SignedApproval
from datalab_cli.local_lab import ANALYST, AUDITOR, LocalLab
from node_agent.log import read_entries
from node_agent.settings import LOG_FILE
from recipes.registry import default_registry

VICTIM = "health"


def _relay(lab: LocalLab, signed: SignedApproval, agency: str) -> None:
    """What a compromised hub does: put a grant straight into the table it relays from."""
    with sqlite3.connect(lab.hub_state() / "hub.db", timeout=10) as db:
        db.execute(
            "INSERT INTO approval_grants (approval_id, agency, recipe, version, signed, revoked,"
            " created_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
            (
                signed.grant.approval_id,
                agency,
                signed.grant.recipe,
                signed.grant.version,
                json.dumps(signed.model_dump(mode="json")),
                time.time(),
            ),
        )


def _unrelay(lab: LocalLab, approval_id: str) -> None:
    with sqlite3.connect(lab.hub_state() / "hub.db", timeout=10) as db:
        db.execute("DELETE FROM approval_grants WHERE approval_id = ?", (approval_id,))


@pytest.fixture
def relayed(governed_lab: LocalLab) -> Iterator[list[str]]:
    ids: list[str] = []
    yield ids
    for approval_id in ids:
        _unrelay(governed_lab, approval_id)


def _grant(agency: str, key: SigningKey) -> SignedApproval:
    recipe = default_registry().get("key_groups")
    grant = new_grant(
        agency=agency,
        recipe=recipe.name,
        version=recipe.version,
        code_sha256=recipe.code_sha256(),
        bounds={},
        approved_by="mallory",
    )
    return sign_grant(key, grant)


def _refused_both_sides(lab: LocalLab, words: str) -> None:
    with Lab(lab.url, lab.tokens[ANALYST]) as analyst, pytest.raises(JobRefused) as refused:
        analyst.run("key_groups", group="chronic_illness", level="district")
    assert words in refused.value.message
    node_log = list(read_entries(lab.node_state(VICTIM) / LOG_FILE))
    assert any(e["event"] == "approval_refused" and words in e["data"]["reason"] for e in node_log)
    with Lab(lab.url, lab.tokens[AUDITOR]) as auditor:
        hub_side = auditor.audit(agency=VICTIM, outcome="refused")
    assert any(words in str(d.get("reason")) for d in hub_side.data)


def test_a_grant_forged_by_the_hub_is_refused_and_logged_on_both_sides(
    governed_lab: LocalLab, relayed: list[str]
) -> None:
    forged = _grant(VICTIM, SigningKey.generate())  # the hub's own key, or any but the agency's
    relayed.append(forged.grant.approval_id)
    _relay(governed_lab, forged, VICTIM)
    _refused_both_sides(governed_lab, "is not signed by agency health's key")


def test_a_grant_altered_by_the_hub_is_refused(governed_lab: LocalLab, relayed: list[str]) -> None:
    genuine = _grant(VICTIM, agency_key(governed_lab.node_state(VICTIM)))
    wider = genuine.grant.model_copy(update={"approval_id": genuine.grant.approval_id[::-1]})
    altered = SignedApproval(grant=wider, signature=genuine.signature)
    relayed.append(altered.grant.approval_id)
    _relay(governed_lab, altered, VICTIM)
    _refused_both_sides(governed_lab, "is not signed by agency health's key")


def test_another_agencys_genuine_grant_replayed_is_refused(
    governed_lab: LocalLab, relayed: list[str]
) -> None:
    other = _grant("civil_affairs", agency_key(governed_lab.node_state("civil_affairs")))
    relayed.append(other.grant.approval_id)
    _relay(governed_lab, other, VICTIM)  # relayed to health's node
    _refused_both_sides(governed_lab, "is agency 'civil_affairs''s, not 'health''s")
