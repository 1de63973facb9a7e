"""A node's side of a matching job: read its records, derive keys, run its PSI role via the hub.

Runs inside the executor's worker thread after every usual check of the task passed (hub
signature, nonce, approved recipe hash, bounds). The exchange, through the hub's relay:

    server → client   terms     {min_set, min_change}        the answering node's rules
    client → server   hello     {units: [sizes], reveal}     one unit per group queried
    server → client   setup     its blinded set (GCS)        or refused {reason}
    client → server   request   per unit and chunk, + keyed digests for the minimum-change rule
    server → client   response  per unit and chunk           or refused {reason}

The server refuses units smaller than its minimum, repeated points (a padded set), sizes that do
not add up, and sets too close to an earlier one from the same agency. The client merges each
unit's chunk responses before computing its count, so it never learns a per-chunk count. What
leaves either node is blinded points, the server's setup and keyed digests; the client's partial
is counts per group; a reveal list stays in the client's state folder.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from datalab.errors import TaskRefused, error_from_body
from datalab.signing import SigningKey, sign_request
from datalab.wire import PsiMessage, Table, Task
from node_agent.connector import Connector
from node_agent.identity import IdentityColumns, areas, client_elements, server_elements
from node_agent.log import LocalLog
from node_agent.psi import (
    CHUNK_ITEMS,
    PsiClient,
    PsiRefused,
    PsiServer,
    chunked,
    parse_request,
    warm_up,
)
from node_agent.psi_history import MinimumChange, as_set, keyed_digests, summary_key
from node_agent.settings import NodeSettings
from node_agent.verification import split_key, write_list
from recipes.psi_contract import PsiPlan

API = "/api/v1"
POLL_S = 20
#: the server's setup travels in parts of this size (base64 adds a third; the hub's default
#: body limit is 1 MiB)
SETUP_PART_BYTES = 512 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise PsiRefused("a PSI message is not base64") from exc


class RelayLink:
    """This task's mailbox at the hub: signed POST/GET of ``PsiMessage``s (sync, in a thread)."""

    def __init__(
        self, settings: NodeSettings, key: SigningKey, task: Task, client: httpx.Client
    ) -> None:
        self._settings = settings
        self._key = key
        self._task = task
        self._client = client
        self._url = f"{settings.hub_url}{API}/nodes/{settings.agency}/psi/{task.task_id}/messages"
        self._after = 0
        self._pending: list[PsiMessage] = []

    def _headers(self, method: str, body: bytes) -> dict[str, str]:
        path = httpx.URL(self._url).path
        return sign_request(self._key, self._settings.agency, method, path, body)

    def send(self, message: PsiMessage) -> None:
        body = message.model_dump_json().encode()
        headers = self._headers("POST", body)
        headers["Content-Type"] = "application/json"
        response = self._client.post(self._url, content=body, headers=headers)
        if response.status_code >= 400:
            raise error_from_body(response.status_code, _json(response))

    def receive(self, kinds: Iterable[str]) -> PsiMessage:
        """The next message of one of ``kinds`` (a ``refused`` always ends the wait)."""
        wanted = {*kinds, "refused"}
        while True:
            for i, message in enumerate(self._pending):
                if message.kind in wanted:
                    return self._pending.pop(i)
            remaining = self._task.expires_at - time.time()
            if remaining <= 0:
                raise TimeoutError("the other node did not answer before the task expired")
            wait = int(min(POLL_S, max(1, remaining)))
            response = self._client.get(
                self._url,
                params={"after": self._after, "wait": wait},
                headers=self._headers("GET", b""),
                timeout=httpx.Timeout(10.0, read=wait + 10.0),
            )
            if response.status_code >= 400:
                raise error_from_body(response.status_code, _json(response))
            for item in response.json():
                message = PsiMessage.model_validate(item)
                self._after = max(self._after, message.seq)
                self._pending.append(message)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@dataclass
class PsiParty:
    """Wired once per node; ``run`` plays one task's role."""

    settings: NodeSettings
    connector: Connector
    node_key: SigningKey
    log: LocalLog
    history: MinimumChange

    def __post_init__(self) -> None:
        warm_up(self.settings.psi_workers)

    def run(self, task: Task, plan: PsiPlan, output_columns: list[str]) -> tuple[Table, int]:
        with httpx.Client(timeout=60.0) as client:
            link = RelayLink(self.settings, self.node_key, task, client)
            if plan.role == "server":
                return self.serve(task, plan, link, output_columns)
            return self.ask(task, plan, link, output_columns)

    def _read(self, plan: PsiPlan) -> Any:
        ident = plan.identity
        columns = [c for c in (ident.id, ident.name, ident.birth, ident.sex) if c]
        return self.connector.read_local(
            plan.dataset, [*columns, plan.area_column], plan.filters, plan.active
        )

    # ---------------------------------------------------------------- the answering node

    def _refuse(self, link: RelayLink, reason: str) -> TaskRefused:
        link.send(PsiMessage(kind="refused", meta={"reason": reason}))
        return TaskRefused(reason)

    def serve(
        self, task: Task, plan: PsiPlan, link: RelayLink, output_columns: list[str]
    ) -> tuple[Table, int]:
        table = self._read(plan)
        identity = IdentityColumns(**plan.identity.model_dump())
        items, counts = server_elements(table, identity, plan.area_column, plan.match_level)
        min_set, min_change = self.settings.psi_min_set, self.settings.psi_min_change
        link.send(PsiMessage(kind="terms", meta={"min_set": min_set, "min_change": min_change}))
        hello = link.receive({"hello"})
        if hello.kind == "refused":
            raise TaskRefused(f"the asking node stopped: {hello.meta.get('reason', '')}")
        sizes = hello.meta.get("units")
        reveal = hello.meta.get("reveal")
        if reveal is not (plan.mode == "reveal"):
            raise self._refuse(link, "the asking node's mode differs from the approved task")
        if not isinstance(sizes, list) or not sizes or not all(isinstance(s, int) for s in sizes):
            raise self._refuse(link, "the asking node sent no set sizes")
        if min(sizes) < min_set:
            raise self._refuse(
                link, f"a client set is smaller than this node's minimum of {min_set} items"
            )
        server = PsiServer(reveal=reveal, workers=self.settings.psi_workers)
        setup = server.setup(items, sum(sizes))
        pieces = [setup[i : i + SETUP_PART_BYTES] for i in range(0, len(setup), SETUP_PART_BYTES)]
        for part, piece in enumerate(pieces or [b""]):
            link.send(
                PsiMessage(kind="setup", part=part, meta={"parts": len(pieces)}, body=_b64(piece))
            )
        parts = {u: max(1, math.ceil(s / CHUNK_ITEMS)) for u, s in enumerate(sizes)}
        received: dict[tuple[int, int], PsiMessage] = {}
        while len(received) < sum(parts.values()):
            message = link.receive({"request"})
            if message.kind == "refused":
                raise TaskRefused(f"the asking node stopped: {message.meta.get('reason', '')}")
            if message.unit not in parts or not 0 <= message.part < parts[message.unit]:
                raise self._refuse(link, "a request chunk names no declared unit or part")
            received[(message.unit, message.part)] = message
        try:
            requests, digest_sets = self._check_units(received, sizes, parts, reveal)
        except PsiRefused as exc:
            raise self._refuse(link, str(exc)) from None
        hello_from = hello.sender or "unknown"
        reason = self.history.check_and_record(hello_from, digest_sets, min_change)
        if reason is not None:
            raise self._refuse(link, reason)
        keys = sorted(received)
        responses = server.process([requests[k] for k in keys])
        for (unit, part), response in zip(keys, responses, strict=True):
            link.send(PsiMessage(kind="response", unit=unit, part=part, body=_b64(response)))
        self.log.append(
            "psi_answered",
            {
                "task_id": task.task_id,
                "job_id": task.job_id,
                "items": len(items),
                "client_units": len(sizes),
                "client_items": sum(sizes),
                **counts.as_dict(),
            },
        )
        return Table(columns=output_columns, rows=[]), len(items)

    def _check_units(
        self,
        received: dict[tuple[int, int], PsiMessage],
        sizes: list[int],
        parts: dict[int, int],
        reveal: bool,
    ) -> tuple[dict[tuple[int, int], bytes], list[np.ndarray]]:
        requests: dict[tuple[int, int], bytes] = {}
        digest_sets: list[np.ndarray] = []
        for unit, size in enumerate(sizes):
            points: set[bytes] = set()
            digests = b""
            for part in range(parts[unit]):
                message = received[(unit, part)]
                data = _unb64(message.body)
                request = parse_request(data, reveal)
                points.update(request.encrypted_elements)
                digests += _unb64(message.digests)
                requests[(unit, part)] = data
            if len(points) != size:
                raise PsiRefused("a client set's size differs from what it declared, or repeats")
            digest_set = as_set(digests)
            if len(digests) != 8 * size or len(digest_set) != size:
                raise PsiRefused("a client set's digests do not match its items")
            digest_sets.append(digest_set)
        return requests, digest_sets

    # ---------------------------------------------------------------- the asking node

    def _receive_setup(self, link: RelayLink) -> bytes:
        """The server's setup, sent in parts so each message stays under the hub's body limit."""
        pieces: dict[int, bytes] = {}
        parts = 1
        while len(pieces) < parts:
            message = link.receive({"setup"})
            if message.kind == "refused":
                raise TaskRefused(
                    f"agency {message.sender} refused: {message.meta.get('reason', '')}"
                )
            parts = int(message.meta.get("parts", 1))
            pieces[message.part] = _unb64(message.body)
        if sorted(pieces) != list(range(parts)):
            raise PsiRefused("the PSI setup's parts do not add up")
        return b"".join(pieces[i] for i in range(parts))

    def ask(
        self, task: Task, plan: PsiPlan, link: RelayLink, output_columns: list[str]
    ) -> tuple[Table, int]:
        table = self._read(plan)
        identity = IdentityColumns(**plan.identity.model_dump())
        elements, counts = client_elements(
            table, identity, plan.area_column, plan.match_level, cascade=plan.cascade
        )
        groups = (
            areas(table, plan.area_column, plan.group_level)
            if plan.group_level
            else [""] * table.num_rows
        )
        records: dict[tuple[str, str], int] = {}
        for element, group in zip(elements, groups, strict=True):
            if element is not None and group is not None:
                records[(group, element)] = records.get((group, element), 0) + 1
        by_group: dict[str, list[str]] = {}
        for (group, element), n in sorted(records.items()):
            if n >= plan.min_records:
                by_group.setdefault(group, []).append(element)
        terms = link.receive({"terms"})
        if terms.kind == "refused":
            raise TaskRefused(f"agency {terms.sender} refused: {terms.meta.get('reason', '')}")
        min_set = int(terms.meta.get("min_set", 1))
        reveal = plan.mode == "reveal"
        if plan.mode == "per_group":
            units = {g: items for g, items in by_group.items() if len(items) >= min_set}
        else:
            everything = sorted({e for items in by_group.values() for e in items})
            if plan.max_areas_per_key is not None:
                everything = bound_per_key(everything, plan.max_areas_per_key)
            units = {"": everything} if len(everything) >= min_set else {}
        if not units:
            reason = f"no set to match has the answering node's minimum of {min_set} items"
            link.send(PsiMessage(kind="refused", meta={"reason": reason}))
            raise TaskRefused(reason)
        unit_keys = list(units)
        link.send(
            PsiMessage(
                kind="hello", meta={"units": [len(units[g]) for g in unit_keys], "reveal": reveal}
            )
        )
        client = PsiClient(reveal=reveal, workers=self.settings.psi_workers)
        secret = summary_key(self.settings.state)
        for u, group in enumerate(unit_keys):
            items = units[group]
            for part, (request, chunk) in enumerate(
                zip(client.requests(items), chunked(items), strict=True)
            ):
                link.send(
                    PsiMessage(
                        kind="request",
                        unit=u,
                        part=part,
                        body=_b64(request),
                        digests=_b64(keyed_digests(secret, chunk)),
                    )
                )
        setup_bytes = self._receive_setup(link)
        responses: dict[int, dict[int, bytes]] = {u: {} for u in range(len(unit_keys))}
        expected = sum(max(1, math.ceil(len(units[g]) / CHUNK_ITEMS)) for g in unit_keys)
        for _ in range(expected):
            message = link.receive({"response"})
            if message.kind == "refused":
                raise TaskRefused(
                    f"agency {message.sender} refused: {message.meta.get('reason', '')}"
                )
            responses[message.unit][message.part] = _unb64(message.body)
        flag_count: dict[str, int | None] = dict.fromkeys(by_group)
        checked: dict[str, int | None] = dict.fromkeys(by_group)
        if reveal:
            items = units[""]
            chunks = [responses[0][p] for p in sorted(responses[0])]
            found = set(client.intersection(setup_bytes, chunks, len(items)))
            wanted = plan.flag == "matched"
            flagged = {e for i, e in enumerate(items) if (i in found) == wanted}
            rows = []
            for group, group_items in by_group.items():
                checked[group] = len(group_items)
                flag_count[group] = sum(1 for e in group_items if e in flagged)
                rows += [
                    {**split_key(e), "group": group or None, "status": plan.flag}
                    for e in group_items
                    if e in flagged
                ]
            path = write_list(self.settings.verification_dir, task.job_id, rows)
            self.log.append(
                "verification_list_written",
                {
                    "task_id": task.task_id,
                    "job_id": task.job_id,
                    "file": path.name,
                    "rows": len(rows),
                },
            )
        else:
            for u, group in enumerate(unit_keys):
                chunks = [responses[u][p] for p in sorted(responses[u])]
                n = len(units[group])
                checked[group] = n
                matched = client.cardinality(setup_bytes, chunks, n)
                flag_count[group] = matched if plan.flag == "matched" else n - matched
        self.log.append(
            "psi_asked",
            {
                "task_id": task.task_id,
                "job_id": task.job_id,
                "units": len(unit_keys),
                "items": sum(len(units[g]) for g in unit_keys),
                **counts.as_dict(),
            },
        )
        if plan.group_level:
            out = [[g, flag_count[g], checked[g]] for g in sorted(by_group)]
        else:
            out = [[flag_count[""], checked[""]]] if "" in flag_count else []
        return Table(columns=output_columns, rows=out), counts.records


def bound_per_key(elements: list[str], most: int) -> list[str]:
    """At most ``most`` elements ``<key>@<area>`` per key (the first areas in sorted order):
    contribution bounding for a differentially private count, done where the keys are."""
    kept: list[str] = []
    seen: dict[str, int] = {}
    for element in sorted(elements):
        key = element.rsplit("@", 1)[0]
        if seen.get(key, 0) < most:
            seen[key] = seen.get(key, 0) + 1
            kept.append(element)
    return kept
