"""A node's side of a matching job: read its records, derive keys, run its PSI role via the hub.

Runs inside the executor's worker thread after every usual check of the task passed (hub
signature, nonce, approved recipe hash, bounds). The exchange, through the hub's relay:

    server → client   terms     {min_set, min_change}        the answering node's rules
    client → server   hello     {units: [sizes], reveal}     one unit per group queried
    client → server   request   per unit and chunk, + keyed digests for the minimum-change rule
    server → client   setup     its blinded set (GCS)        or refused {reason}
    server → client   response  ONE per unit (merged, re-sorted), in parts   or refused {reason}

The server refuses units smaller than its minimum, repeated points (a padded set), sizes that do
not add up, and sets too close to an earlier one from the same agency. The server merges each
unit's chunk responses (re-sorted as a whole in cardinality mode) before sending any, so the
client never holds a response to a chunk of its choosing and never learns a per-chunk count. What
leaves either node is blinded points, the server's setup and keyed digests; the client's partial
is counts per group; a reveal list stays in the client's state folder.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from datalab.errors import TaskRefused, error_from_body
from datalab.signing import SigningKey, sign_request
from datalab.wire import PsiMessage, PsiProgress, Table, Task
from node_agent.connector import Connector
from node_agent.log import LocalLog
from node_agent.psi_engine import (
    PsiClient,
    PsiRefused,
    PsiServer,
    check_set,
    chunk_count,
    chunked,
    response_parts,
    warm_up,
)
from node_agent.psi_min_change import MinimumChange, as_set, keyed_digests, summary_key
from node_agent.psi_query_sets import (
    Unit,
    client_sets,
    flagged_elements,
    group_counts,
    query_units,
    server_set,
)
from node_agent.settings import NodeSettings
from node_agent.verification_lists import split_key, write_list
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
        #: the agency this link talks to unless told otherwise: an answering node talks only
        #: to the asking one (``Task.peers[0]``); "" in a two-party job from an older hub
        self.peer = task.peers[0] if task.peers and task.peers[0] != settings.agency else ""

    def _headers(self, method: str, body: bytes) -> dict[str, str]:
        path = httpx.URL(self._url).path
        return sign_request(self._key, self._settings.agency, method, path, body)

    def send(self, message: PsiMessage, to: str | None = None) -> None:
        message = message.model_copy(update={"to": self.peer if to is None else to})
        body = message.model_dump_json().encode()
        headers = self._headers("POST", body)
        headers["Content-Type"] = "application/json"
        response = self._client.post(self._url, content=body, headers=headers)
        if response.status_code >= 400:
            raise error_from_body(response.status_code, _json(response))

    def report(self, progress: PsiProgress) -> None:
        """Tell the hub how far this (asking) task's match is: counts only. Advisory: a lost
        report must not stop the match, so errors are ignored."""
        body = progress.model_dump_json().encode()
        url = self._url.rsplit("/", 1)[0] + "/progress"
        headers = sign_request(self._key, self._settings.agency, "POST", httpx.URL(url).path, body)
        headers["Content-Type"] = "application/json"
        with contextlib.suppress(httpx.HTTPError):
            self._client.post(url, content=body, headers=headers)

    def receive(self, kinds: Iterable[str], sender: str | None = None) -> PsiMessage:
        """The next message of one of ``kinds`` from ``sender`` (default: this link's peer; ""
        for anyone); a ``refused`` always ends the wait."""
        wanted = {*kinds, "refused"}
        sender = self.peer if sender is None else sender
        while True:
            for i, message in enumerate(self._pending):
                if message.kind in wanted and (not sender or message.sender == sender):
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


class Progress:
    """The asking node's chunks done out of all (requests sent + responses received, over
    every answering node), reported to the hub at most every ``EVERY_S`` seconds and at the
    end, so the analyst's client can show a bar that moves during a long match."""

    EVERY_S = 0.25

    def __init__(self, link: RelayLink, total: int) -> None:
        self._link, self.total, self.done, self._last = link, max(1, total), 0, 0.0

    def step(self) -> None:
        self.done = min(self.total, self.done + 1)
        now = time.monotonic()
        if self.done == self.total or now - self._last >= self.EVERY_S:
            self._last = now
            self._link.report(PsiProgress(done=self.done, total=self.total))


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
        items, counts = server_set(table, plan)
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
        parts = {u: chunk_count(s) for u, s in enumerate(sizes)}
        received: dict[tuple[int, int], PsiMessage] = {}
        pending: dict[tuple[int, int], Callable[[], bytes]] = {}
        # the setup (one process: openmined-psi builds it in one call) runs in a thread while
        # the request chunks arrive and their curve work starts on the pool, so every core
        # stays busy; nothing computed from a request is sent before the checks below
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="psi-setup") as background:
            setup_job = background.submit(server.setup, items, sum(sizes))
            while len(received) < sum(parts.values()):
                message = link.receive({"request"})
                if message.kind == "refused":
                    raise TaskRefused(f"the asking node stopped: {message.meta.get('reason', '')}")
                key = (message.unit, message.part)
                if message.unit not in parts or not 0 <= message.part < parts[message.unit]:
                    raise self._refuse(link, "a request chunk names no declared unit or part")
                if key in received:
                    raise self._refuse(link, "a request chunk came twice")
                try:
                    pending[key] = server.start(_unb64(message.body))
                except PsiRefused as exc:
                    raise self._refuse(link, str(exc)) from None
                received[key] = message
            setup = setup_job.result()
        pieces = [setup[i : i + SETUP_PART_BYTES] for i in range(0, len(setup), SETUP_PART_BYTES)]
        for part, piece in enumerate(pieces or [b""]):
            link.send(
                PsiMessage(kind="setup", part=part, meta={"parts": len(pieces)}, body=_b64(piece))
            )
        try:
            digest_sets = self._check_units(received, sizes, parts, reveal)
        except PsiRefused as exc:
            raise self._refuse(link, str(exc)) from None
        hello_from = hello.sender or "unknown"
        reason = self.history.check_and_record(hello_from, digest_sets, min_change)
        if reason is not None:
            raise self._refuse(link, reason)
        # ONE response per client set: its chunks' responses merged (and re-sorted as a
        # whole in cardinality mode) here, so the asking node cannot finish a chunk of its
        # own choosing on its own and learn its count; sent in parts only for the hub's body
        # limit (contiguous slices of the one sorted answer)
        for unit in range(len(sizes)):
            points = server.merged([pending[(unit, p)] for p in range(parts[unit])])
            pieces = response_parts(points)
            for part, piece in enumerate(pieces):
                link.send(
                    PsiMessage(
                        kind="response",
                        unit=unit,
                        part=part,
                        meta={"parts": len(pieces)},
                        body=_b64(piece),
                    )
                )
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
    ) -> list[np.ndarray]:
        """Each declared client set checked as a whole (parses, mode, no repeated point, the
        declared size, digests that match); its digest set for the minimum-change rule."""
        digest_sets: list[np.ndarray] = []
        for unit, size in enumerate(sizes):
            messages = [received[(unit, part)] for part in range(parts[unit])]
            chunks = [_unb64(m.body) for m in messages]
            digests = b"".join(_unb64(m.digests) for m in messages)
            if check_set(chunks, reveal) != size:
                raise PsiRefused("a client set's size differs from what it declared")
            digest_set = as_set(digests)
            if len(digests) != 8 * size or len(digest_set) != size:
                raise PsiRefused("a client set's digests do not match its items")
            digest_sets.append(digest_set)
        return digest_sets

    # ---------------------------------------------------------------- the asking node

    def _receive_setup(self, link: RelayLink, sender: str) -> bytes:
        """The server's setup, sent in parts so each message stays under the hub's body limit."""
        pieces: dict[int, bytes] = {}
        parts = 1
        while len(pieces) < parts:
            message = link.receive({"setup"}, sender)
            if message.kind == "refused":
                raise TaskRefused(
                    f"agency {message.sender} refused: {message.meta.get('reason', '')}"
                )
            parts = int(message.meta.get("parts", 1))
            pieces[message.part] = _unb64(message.body)
        if sorted(pieces) != list(range(parts)):
            raise PsiRefused("the PSI setup's parts do not add up")
        return b"".join(pieces[i] for i in range(parts))

    def _stop(self, link: RelayLink, servers: list[str], reason: str) -> TaskRefused:
        for server in servers:
            link.send(PsiMessage(kind="refused", meta={"reason": reason}), to=server)
        return TaskRefused(reason)

    def ask(
        self, task: Task, plan: PsiPlan, link: RelayLink, output_columns: list[str]
    ) -> tuple[Table, int]:
        """The asking node's role, against one answering node or several (``Task.peers``):
        with several, the flag is about records none of them holds (``unmatched``), which
        needs each record's membership, so only reveal mode is possible."""
        table = self._read(plan)
        sets = client_sets(table, plan)
        servers = [p for p in task.peers[1:] if p != self.settings.agency] or [""]
        reveal = plan.mode == "reveal"
        min_set = 1
        for server in servers:
            terms = link.receive({"terms"}, server)
            if terms.kind == "refused":
                reason = f"agency {terms.sender} refused: {terms.meta.get('reason', '')}"
                raise self._stop(link, [s for s in servers if s != server], reason)
            min_set = max(min_set, int(terms.meta.get("min_set", 1)))
        if len(servers) > 1 and not reveal:
            raise self._stop(link, servers, "several answering agencies need reveal mode")
        units = query_units(sets, plan, min_set)
        if not units:
            reason = f"no set to match has the answering node's minimum of {min_set} items"
            raise self._stop(link, servers, reason)
        unit_keys = list(units)
        chunks = sum(chunk_count(len(units[k])) for k in unit_keys)
        progress = Progress(link, 2 * chunks * len(servers))
        found: dict[Unit, set[int]] = {k: set() for k in unit_keys}
        matched: dict[Unit, int] = {}
        # every answering node gets its requests first, so they all work at the same time
        clients: dict[str, PsiClient] = {}
        for server in servers:
            # a fresh key per answering agency: none can link its run to another's
            clients[server] = PsiClient(reveal=reveal, workers=self.settings.psi_workers)
            self._send_requests(link, server, clients[server], units, unit_keys, progress)
        for server, client in clients.items():
            setup, responses = self._collect(link, server, units, unit_keys, progress)
            for u, k in enumerate(unit_keys):
                if reveal:
                    found[k] |= set(client.intersection(setup, responses[u], len(units[k])))
                else:
                    matched[k] = client.cardinality(setup, responses[u], len(units[k]))
        if reveal:
            flagged = flagged_elements(plan, units, found)
            per_group: dict[str, tuple[int | None, int | None]] = {}
            rows = []
            for group, group_items in sets.by_group.items():
                per_group[group] = (sum(1 for e in group_items if e in flagged), len(group_items))
                rows += [
                    {**split_key(e), "group": group or None, "status": plan.flag}
                    for e in group_items
                    if e in flagged
                ]
            if plan.verification_list:
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
            per_group = group_counts(sets, plan, units, matched)
        self.log.append(
            "psi_asked",
            {
                "task_id": task.task_id,
                "job_id": task.job_id,
                "answering": len(servers),
                "units": len(unit_keys),
                "items": sum(len(units[k]) for k in unit_keys),
                **sets.counts.as_dict(),
            },
        )
        if plan.group_level:
            out = [[g, *per_group[g]] for g in sorted(sets.by_group)]
        else:
            out = [list(per_group[""])] if "" in per_group else []
        return Table(columns=output_columns, rows=out), sets.counts.records

    def _send_requests(
        self,
        link: RelayLink,
        server: str,
        client: PsiClient,
        units: dict[Unit, list[str]],
        unit_keys: list[Unit],
        progress: Progress,
    ) -> None:
        """One answering node's hello and every unit's request chunks, each sent as soon as
        it is computed."""
        link.send(
            PsiMessage(
                kind="hello",
                meta={"units": [len(units[k]) for k in unit_keys], "reveal": client.reveal},
            ),
            to=server,
        )
        secret = summary_key(self.settings.state)
        for u, unit in enumerate(unit_keys):
            items = units[unit]
            for part, (request, chunk) in enumerate(
                zip(client.iter_requests(items), chunked(items), strict=True)
            ):
                link.send(
                    PsiMessage(
                        kind="request",
                        unit=u,
                        part=part,
                        body=_b64(request),
                        digests=_b64(keyed_digests(secret, chunk)),
                    ),
                    to=server,
                )
                progress.step()

    def _collect(
        self,
        link: RelayLink,
        server: str,
        units: dict[Unit, list[str]],
        unit_keys: list[Unit],
        progress: Progress,
    ) -> tuple[bytes, list[list[bytes]]]:
        """One answering node's setup and its ONE response per unit, each in the parts it was
        sent in (contiguous slices of the whole; the answering node merged and re-sorted the
        unit's chunks before sending any)."""
        setup = self._receive_setup(link, server)
        responses: dict[int, dict[int, bytes]] = {u: {} for u in range(len(unit_keys))}
        parts: dict[int, int] = {}
        while any(len(responses[u]) < parts.get(u, 1) for u in responses):
            message = link.receive({"response"}, server)
            if message.kind == "refused":
                raise TaskRefused(
                    f"agency {message.sender} refused: {message.meta.get('reason', '')}"
                )
            if message.unit not in responses or parts.setdefault(
                message.unit, int(message.meta.get("parts", 1))
            ) != int(message.meta.get("parts", 1)):
                raise PsiRefused("a PSI response names no unit or disagrees on its parts")
            responses[message.unit][message.part] = _unb64(message.body)
            progress.step()
        for u, got in responses.items():
            if sorted(got) != list(range(parts[u])):
                raise PsiRefused("a PSI response's parts do not add up")
        return setup, [[responses[u][p] for p in range(parts[u])] for u in responses]
