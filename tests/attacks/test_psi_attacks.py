"""Attacks on cross-agency matching. Each test asserts that the attack fails.

* the hub (its database, its log) and every byte relayed between the two nodes hold none of
  either agency's identifiers or names, nor their plain sha256 hashes;
* an analyst never receives a verification list, and cannot reach the relay;
* a node cannot read or write another agency's mailbox, nor one of an ended job;
* a client cannot learn a count per chunk of its own choosing: the answering node answers
  each whole set once, merged and re-sorted;
* a tiny, padded or mis-declared client set, and a re-run with the same set plus one target,
  are refused by the answering node (real node code, real openmined-psi, real data; only the
  transport between the two parties is an in-memory queue so the client can be a crafted one).
"""

from __future__ import annotations

import base64
import hashlib
import queue
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest

from datalab.client import Lab
from datalab.errors import TaskRefused
from datalab.signing import SigningKey, load_or_create_key, sign_request
from datalab.wire import PsiMessage, Task
from datalab_cli.local_lab import ANALYST, AUDITOR, LocalLab
from node_agent import psi_engine
from node_agent.connector import DuckDBConnector
from node_agent.log import LocalLog
from node_agent.psi_engine import PsiClient
from node_agent.psi_exchange import PsiParty
from node_agent.psi_min_change import MinimumChange, keyed_digests, summary_key
from node_agent.psi_query_sets import server_set
from node_agent.settings import NodeSettings
from recipes.missed_registration import MissedRegistration
from tests.support.identifiers import CityIdentifiers
from tests.support.proxy import RecordingProxy

RECIPE = "missed_registration"
_B64_FIELD = re.compile(rb'"(?:body|digests)":"([A-Za-z0-9+/=]*)"')
_HEX64 = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def _sha256(values: Iterable[str]) -> set[bytes]:
    return {hashlib.sha256(v.encode("utf-8")).digest() for v in values}


def _relayed_blobs(received: bytes) -> list[bytes]:
    return [base64.b64decode(m) for m in _B64_FIELD.findall(received) if m]


def test_hub_and_relayed_messages_hold_no_identifier_name_or_plain_hash(
    lab: LocalLab, proxy: RecordingProxy, analyst: Lab, city_identifiers: CityIdentifiers
) -> None:
    for agency in ("housing", "activity", "public_security"):
        lab.approve_reveal(agency, RECIPE)
    analyst.run(RECIPE, source="tenancy", level="district", progress=False)
    analyst.run(RECIPE, source="tenancy", mode="reveal", level="district", progress=False)
    analyst.run(RECIPE, source="night_activity", level="district", progress=False)
    received = proxy.received()
    blobs = _relayed_blobs(received)
    assert len(blobs) > 10 and sum(map(len, blobs)) > 100_000  # PSI messages really went by

    assert city_identifiers.leaks(received) == set()
    for blob in blobs:
        assert city_identifiers.leaks(blob) == set()
    hub_files = [p for p in lab.hub_state().rglob("*") if p.is_file()]
    for path in hub_files:
        assert city_identifiers.leaks(path.read_bytes()) == set(), path.name
    assert city_identifiers.leaks(lab.log_text("hub").encode()) == set()

    # nor their plain sha256: as hex anywhere, as raw bytes inside any relayed message, nor
    # as the 8-byte prefixes the keyed digests have the shape of
    plain = _sha256(city_identifiers.ids) | _sha256(city_identifiers.names)
    plain |= _sha256(i.lower() for i in city_identifiers.ids)
    hex_found = {bytes.fromhex(h.decode()) for h in _HEX64.findall(received)}
    for path in hub_files:
        hex_found |= {bytes.fromhex(h.decode()) for h in _HEX64.findall(path.read_bytes())}
    assert hex_found and not hex_found & plain
    prefixes = {h[:8] for h in plain}
    for blob in blobs:
        assert not any(blob[i : i + 32] in plain for i in range(0, max(len(blob) - 31, 0)))
        assert not any(blob[i : i + 8] in prefixes for i in range(0, len(blob), 8))


def test_an_analyst_never_receives_a_verification_list(
    lab: LocalLab, proxy: RecordingProxy, analyst: Lab, city_identifiers: CityIdentifiers
) -> None:
    for agency in ("housing", "public_security"):
        lab.approve_reveal(agency, RECIPE)
    frame = analyst.run(RECIPE, source="tenancy", mode="reveal", level="district", progress=False)
    job_id = frame.attrs["provenance"].job_id
    assert lab.verification_list("housing", job_id).exists()  # the list exists, at the node
    assert list(frame.columns) == ["district", "missed", "checked"]
    bodies = []
    headers = {"Authorization": f"Bearer {lab.tokens[ANALYST]}"}
    for path in (f"/api/v1/jobs/{job_id}", "/api/v1/jobs", "/api/v1/recipes/missed_registration"):
        response = httpx.get(f"{proxy.url}{path}", headers=headers, timeout=30)
        assert response.status_code == 200
        bodies.append(response.content)
    assert city_identifiers.leaks(b"\n".join(bodies)) == set()
    # the relay is for signed nodes only
    for method in ("GET", "POST"):
        response = httpx.request(
            method, f"{proxy.url}/api/v1/nodes/housing/psi/{job_id}/messages", headers=headers
        )
        assert response.status_code in (401, 422), response.text


def _task_ids(lab: LocalLab, job_id: str) -> dict[str, str]:
    with Lab(lab.url, lab.tokens[AUDITOR]) as auditor:
        log = auditor.audit()
    issued = log[(log["event"] == "task_issued")]
    return {d["agency"]: d["task_id"] for d in issued["data"] if d["job_id"] == job_id}


def test_a_node_cannot_use_another_agencys_mailbox_nor_an_ended_jobs(
    lab: LocalLab, analyst: Lab
) -> None:
    frame = analyst.run(RECIPE, source="tenancy", level="district", progress=False)
    tasks = _task_ids(lab, frame.attrs["provenance"].job_id)
    key = load_or_create_key(lab.node_state("housing") / "node_key.pem")

    def call(method: str, task_id: str, body: bytes = b"") -> httpx.Response:
        path = f"/api/v1/nodes/housing/psi/{task_id}/messages"
        headers = sign_request(key, "housing", method, path, body)
        headers["Content-Type"] = "application/json"
        return httpx.request(method, f"{lab.url}{path}", content=body or None, headers=headers)

    message = PsiMessage(kind="hello", meta={"units": [50], "reveal": False})
    body = message.model_dump_json().encode()
    assert call("POST", tasks["public_security"], body).status_code == 403
    assert call("GET", tasks["public_security"]).status_code == 403
    ended = call("GET", tasks["housing"])
    assert ended.status_code == 409 and "gone" in ended.text  # messages dropped at the job's end


# ------------------------------------------------------------------ a crafted client


class _Link:
    """An in-memory mailbox pair standing in for the hub relay between the two parties."""

    def __init__(self, inbox: queue.Queue, outbox: queue.Queue, sender: str) -> None:
        self._in, self._out, self._sender = inbox, outbox, sender
        self._pending: list[PsiMessage] = []

    def send(self, message: PsiMessage) -> None:
        self._out.put(message.model_copy(update={"sender": self._sender}))

    def receive(self, kinds: Iterable[str]) -> PsiMessage:
        wanted = {*kinds, "refused"}
        while True:
            for i, m in enumerate(self._pending):
                if m.kind in wanted:
                    return self._pending.pop(i)
            self._pending.append(self._in.get(timeout=60))


@pytest.fixture
def answering_node(city: Path, tmp_path: Path) -> PsiParty:
    settings = NodeSettings(
        agency="public_security",
        data_dir=city / "public_security",
        state_dir=tmp_path / "ps",
        psi_workers=1,
    )
    key = SigningKey.generate()
    return PsiParty(
        settings=settings,
        connector=DuckDBConnector(settings.data_dir),
        node_key=key,
        log=LocalLog(tmp_path / "ps-log.jsonl", key),
        history=MinimumChange(tmp_path / "ps" / "psi-history.sqlite"),
    )


def _crafted_run(party: PsiParty, items: list[str], *, declared: int | None = None) -> str:
    """Play a client that sends exactly ``items``; returns 'ok' or the server's refusal."""
    recipe = MissedRegistration()
    params = recipe.validate({"source": "tenancy", "mode": "cardinality"})
    dataset = next(d for d in party.connector.datasets() if d.name == "registrations")
    plan = recipe.psi_plan(params, dataset)
    task = _task(params)
    to_server, to_client = queue.Queue(), queue.Queue()
    outcome: dict[str, object] = {}

    def serve() -> None:
        try:
            party.serve(
                task, plan, _Link(to_server, to_client, "public_security"), ["missed", "checked"]
            )
            outcome["server"] = "ok"
        except TaskRefused as exc:
            outcome["server"] = exc.message

    thread = threading.Thread(target=serve)
    thread.start()
    link = _Link(to_client, to_server, "housing")
    link.receive({"terms"})
    link.send(PsiMessage(kind="hello", meta={"units": [declared or len(items)], "reveal": False}))
    client = PsiClient(reveal=False)
    secret = summary_key(party.settings.state / "client-secret")
    (request,) = client.requests(items)
    link.send(
        PsiMessage(
            kind="request",
            body=base64.b64encode(request).decode(),
            digests=base64.b64encode(keyed_digests(secret, items)).decode(),
        )
    )
    thread.join(60)
    return str(outcome["server"])


def _known_items(city_identifiers: CityIdentifiers, n: int) -> list[str]:
    return [f"id:{i}@440105001001001" for i in sorted(city_identifiers.ids)[:n]]


def test_tiny_padded_and_misdeclared_client_sets_are_refused(
    answering_node: PsiParty, city_identifiers: CityIdentifiers
) -> None:
    target = _known_items(city_identifiers, 1)
    assert "smaller than this node's minimum" in _crafted_run(answering_node, target)
    padded = target * 30  # one target repeated up to the minimum size
    assert "repeats" in _crafted_run(answering_node, padded)
    honest = _known_items(city_identifiers, 40)
    assert "differs from what it declared" in _crafted_run(answering_node, honest, declared=60)


def test_the_same_set_plus_one_target_is_refused_by_the_minimum_change_rule(
    answering_node: PsiParty, city_identifiers: CityIdentifiers
) -> None:
    base = _known_items(city_identifiers, 60)
    target = "id:" + sorted(city_identifiers.ids)[-1] + "@440105001001001"
    assert _crafted_run(answering_node, base) == "ok"
    assert _crafted_run(answering_node, base) == "ok"  # the same set again reveals nothing
    assert "minimum-change" in _crafted_run(answering_node, [*base, target])
    assert "minimum-change" in _crafted_run(answering_node, [*base[1:], target])
    assert _crafted_run(answering_node, _known_items(city_identifiers, 90)) == "ok"


# ------------------------------------------------------------------ per-chunk counts


def test_a_client_cannot_finish_a_chunk_of_its_choosing_to_learn_its_count(
    answering_node: PsiParty, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A modified asking node splits its set so that one chunk holds only records it knows the
    answering agency has and the other only ones it wants to test; were the answer sent per
    chunk, finishing each chunk alone would give a count per chunk (600 and 0 here: in
    cardinality mode a per-bucket count is a leak). The answering node answers the whole set
    ONCE, merged and re-sorted: every part it relays is a slice of one sorted answer, and the
    slice where chunk 2's answer would be holds a mix the client cannot attribute."""
    monkeypatch.setattr(psi_engine, "CHUNK_ITEMS", 600)
    recipe = MissedRegistration()
    params = recipe.validate({"source": "tenancy", "mode": "cardinality"})
    dataset = next(d for d in answering_node.connector.datasets() if d.name == "registrations")
    plan = recipe.psi_plan(params, dataset)
    held, _ = server_set(answering_node._read(plan), plan)
    members = [e for e in held if e.startswith("id:")][:600]
    strangers = [f"id:{i:018d}@440105001001001" for i in range(600)]
    assert len(members) == 600 and not set(strangers) & set(held)
    items = [*members, *strangers]

    to_server, to_client = queue.Queue(), queue.Queue()
    task = _task(params)
    thread = threading.Thread(
        target=answering_node.serve,
        args=(task, plan, _Link(to_server, to_client, "public_security"), ["missed", "checked"]),
    )
    thread.start()
    link = _Link(to_client, to_server, "housing")
    link.receive({"terms"})
    link.send(PsiMessage(kind="hello", meta={"units": [len(items)], "reveal": False}))
    client = PsiClient(reveal=False)
    secret = summary_key(answering_node.settings.state / "client-secret")
    requests = client.requests(items)
    assert len(requests) == 2  # two chunks of 600, as the attacker arranged
    for part, (request, chunk) in enumerate(zip(requests, (members, strangers), strict=True)):
        link.send(
            PsiMessage(
                kind="request",
                part=part,
                body=base64.b64encode(request).decode(),
                digests=base64.b64encode(keyed_digests(secret, chunk)).decode(),
            )
        )
    setup_message = link.receive({"setup"})
    assert setup_message.kind == "setup" and setup_message.meta["parts"] == 1
    setup = base64.b64decode(setup_message.body)
    responses = [link.receive({"response"}) for _ in range(2)]
    thread.join(60)
    assert not thread.is_alive()

    # every relayed response is a slice of ONE answer to the whole set, sorted as a whole
    assert all(m.kind == "response" and m.meta["parts"] == 2 for m in responses)
    responses.sort(key=lambda m: m.part)
    points = [p for m in responses for p in psi_engine.points_of(base64.b64decode(m.body))]
    assert len(points) == len(items) and points == sorted(points)
    # the client still learns the total
    assert client.cardinality(setup, [base64.b64decode(m.body) for m in responses], 1200) == 600
    # but finishing "chunk 1" or "chunk 2" on its own gives a random half, not 600 and 0
    # (the chance of an exact 600/0 split of a sorted mix is 1 / C(1200, 600))
    first, second = (client.cardinality(setup, [base64.b64decode(m.body)], 600) for m in responses)
    assert first + second == 600
    assert 0 < first < 600 and 0 < second < 600


def _task(params: dict) -> Task:
    now = time.time()
    return Task(
        task_id="t" * 32,
        job_id="j" * 32,
        agency="public_security",
        dataset="registrations",
        recipe=RECIPE,
        version="1.0.0",
        code_sha256="0" * 64,
        params=params,
        issued_at=now,
        expires_at=now + 60,
        nonce="n",
    )
