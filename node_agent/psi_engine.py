"""The PSI engine: openmined-psi's client and server roles, chunked across processes.

openmined-psi does ECDH-PSI on P-256: the client blinds its items with its key (the *request*),
the server blinds its own items (the *setup*) and re-blinds the client's points (the *response*);
only the client learns the result — the size of the intersection, or which of its items are in
it (reveal mode). This module holds the two roles and nothing about HTTP, recipes or data.

Three rules from the library's own security notes are kept here:

* **fresh keys for every run** — both parties create a new key per object; a reused client key
  would let the server see how the client's set changed between runs;
* **one cipher per thread/process** — the C++ cipher is not thread-safe, so a worker process
  rebuilds its own client/server from the run's key bytes (``CreateFromKey``);
* **no per-chunk counts** — a big request is split into chunks so the curve work runs on every
  core, all under ONE key per run. The SERVER merges the chunks' responses of one set and, in
  cardinality mode, re-sorts them as a whole (as openmined-psi sorts a single response), then
  answers the set once: the client never holds a response it can tie to a chunk of its own
  choosing, so it cannot learn how many matches fell in one. The client may then split that one
  sorted response into contiguous parts and finish them on all its workers: each part is a
  subset of its items it cannot name (the order is that of points blinded with the server's
  key), and it could already test every point of the sorted response on its own, so the parts'
  counts tell it nothing beyond the total. See docs/matching.md, "Why the answering node merges".
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, TypeVar

import private_set_intersection.python as psi

#: Items per request chunk: 35 bytes per blinded point, so a chunk stays well under the hub's
#: 1 MiB body limit once base64-encoded.
CHUNK_ITEMS = 10_000
#: Chance of a false positive over the whole query (openmined-psi divides it per element).
FPR = 1e-9

_T = TypeVar("_T")


class PsiRefused(Exception):
    """A PSI message that the receiving party will not process (malformed or crafted)."""


def default_workers() -> int:
    return os.cpu_count() or 1


def chunk_count(n_items: int) -> int:
    """How many chunks (and response parts) a set of ``n_items`` travels in."""
    return max(1, -(-n_items // CHUNK_ITEMS))


def chunked(items: Sequence[_T], size: int | None = None) -> list[Sequence[_T]]:
    """``items`` in consecutive slices of ``size`` (default ``CHUNK_ITEMS``); one empty slice
    for no items."""
    size = size or CHUNK_ITEMS
    return [items[i : i + size] for i in range(0, len(items), size)] or [items[:0]]


_POOLS: dict[int, ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(workers: int) -> Executor | None:
    """A process pool of ``workers`` (> 1), kept for the process's lifetime so its start-up is
    paid once ("forkserver": the node process has threads). Workers hold no state between
    chunks: each rebuilds its cipher from the key bytes it is given."""
    if workers <= 1:
        return None
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=get_context("forkserver"),
                initializer=_yield_to_serial_work,
            )
            atexit.register(pool.shutdown, cancel_futures=True)
        return pool


#: how much the pool's workers yield to the node's own process (``os.nice`` increment).
WORKER_NICENESS = 10


def _yield_to_serial_work() -> None:
    """Lower the worker's scheduling priority. The answering node's setup is one call into
    openmined-psi (no way to split it across processes) and runs in the node's own process
    while the workers blind request chunks; with equal priority the setup gets a fifth of the
    cores while five processes compete, then runs alone on one core at the end while the other
    cores idle (≈ 10 s of 36 at 200,000 × 200,000 on 2 cores). Yielding to it keeps the setup
    off the critical path; the total work is unchanged, so one core's run costs the same."""
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)


def warm_up(workers: int) -> None:
    """Start the pool's worker processes now (a node does this at start), so the first match
    does not pay their start-up."""
    pool = _pool(workers)
    if pool is not None:
        for future in [pool.submit(_noop) for _ in range(workers)]:
            future.result()


def _noop() -> None:
    return None


_M = TypeVar("_M", psi.Request, psi.Response, psi.ServerSetup)

# ------------------------------------------------------------------ worker functions


def _request_chunk(key: bytes, reveal: bool, items: Sequence[str]) -> bytes:
    client = psi.client.CreateFromKey(key, reveal)
    return client.CreateRequest(list(items)).SerializeToString()


def _process_chunk(key: bytes, reveal: bool, request: bytes) -> bytes:
    server = psi.server.CreateFromKey(key, reveal)
    return server.ProcessRequest(parse_request(request, reveal)).SerializeToString()


def _finish_part(key: bytes, reveal: bool, setup: bytes, response: bytes) -> list[int] | int:
    """One contiguous part of a set's (whole, server-merged) response, finished: the number of
    its points in the server's set, or (reveal) their positions within the part."""
    client = psi.client.CreateFromKey(key, reveal)
    message = _parse(psi.Response(), response, "a PSI response")
    server_setup = _parse(psi.ServerSetup(), setup, "the PSI setup")
    if reveal:
        return [int(i) for i in client.GetIntersection(server_setup, message)]
    return int(client.GetIntersectionSize(server_setup, message))


def _parse(message: _M, data: bytes, what: str) -> _M:
    """``message`` filled from ``data``; a refusal naming ``what`` if it does not parse."""
    try:
        message.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise PsiRefused(f"{what} did not parse") from exc
    return message


def points_of(data: bytes) -> list[bytes]:
    """The blinded points of a serialized response (one part of a set's answer)."""
    return list(_parse(psi.Response(), data, "a PSI response").encrypted_elements)


def serialized_response(points: Sequence[bytes]) -> bytes:
    message = psi.Response()
    message.encrypted_elements.extend(points)
    return message.SerializeToString()


def response_parts(points: Sequence[bytes], size: int | None = None) -> list[bytes]:
    """A set's whole response cut into serialized messages of at most ``size`` (default
    ``CHUNK_ITEMS``) points each, in order, so each stays under the hub's body limit;
    concatenated, they are the one response."""
    size = size or CHUNK_ITEMS
    return [serialized_response(p) for p in chunked(points, size)]


def parse_request(data: bytes, reveal: bool) -> psi.Request:
    """A client's request chunk, checked: parseable, the agreed reveal flag, no repeated point.

    A repeated blinded point means a repeated item: a client padding a small set up to the
    minimum size with copies of one target (the points are deterministic under one key).
    """
    request = _parse(psi.Request(), data, "a PSI request")
    if request.reveal_intersection != reveal:
        raise PsiRefused("the PSI request's reveal flag differs from the approved mode")
    points = request.encrypted_elements
    if len(set(points)) != len(points):
        raise PsiRefused("the PSI request repeats an item (a padded or crafted set)")
    return request


def check_set(chunks: Sequence[bytes], reveal: bool) -> int:
    """How many items one client set's request chunks hold, checked as a whole: every chunk
    parses and has the agreed reveal flag, and no point repeats, within a chunk or across
    the set's chunks (a target copied into every chunk is a padded set too)."""
    seen: set[bytes] = set()
    total = 0
    for data in chunks:
        points = parse_request(data, reveal).encrypted_elements
        seen.update(points)
        total += len(points)
    if len(seen) != total:
        raise PsiRefused("the PSI request repeats an item (a padded or crafted set)")
    return total


#: a set's response is finished on several workers only in parts of at least this many points
#: (below, shipping the setup to a worker costs more than the curve work it saves)
MIN_PART_ITEMS = 2_000


# ------------------------------------------------------------------ the two roles


class PsiClient:
    """The asking party: learns the intersection size (or, in reveal mode, its own matches)."""

    def __init__(self, *, reveal: bool, workers: int = 1) -> None:
        self.reveal = reveal
        self.workers = workers
        self._client = psi.client.CreateWithNewKey(reveal)  # fresh key every run
        self._key = self._client.GetPrivateKeyBytes()

    def requests(self, items: Sequence[str]) -> list[bytes]:
        """The blinded request for ``items``, in chunks (in order), computed on all workers."""
        return list(self.iter_requests(items))

    def iter_requests(self, items: Sequence[str]) -> Iterator[bytes]:
        """``requests`` chunk by chunk, in order, each as soon as it is ready (so it can be
        sent, and progress reported, while the next ones are computed)."""
        chunks = chunked(items)
        pool = _pool(min(self.workers, len(chunks)))
        if pool is None:
            for c in chunks:
                yield self._client.CreateRequest(list(c)).SerializeToString()
            return
        futures = [pool.submit(_request_chunk, self._key, self.reveal, c) for c in chunks]
        for f in futures:
            yield f.result()

    def _finish(self, setup: bytes, parts: Sequence[bytes], n_items: int) -> list[Any]:
        """(offset, result) of each contiguous slice of ONE set's whole response (the server's
        ``parts`` joined), the slices finished on all workers under this run's one key."""
        points: list[bytes] = []
        for data in parts:
            points.extend(points_of(data))
        if len(points) != n_items:
            raise PsiRefused("the PSI response does not answer every requested item")
        server_setup = _parse(psi.ServerSetup(), setup, "the PSI setup")
        k = max(1, min(self.workers, n_items // MIN_PART_ITEMS))
        pool = _pool(k)
        if pool is None:
            whole = psi.Response()
            whole.encrypted_elements.extend(points)
            if self.reveal:
                return [(0, list(self._client.GetIntersection(server_setup, whole)))]
            return [(0, int(self._client.GetIntersectionSize(server_setup, whole)))]
        cuts = [n_items * i // k for i in range(k + 1)]
        futures = [
            pool.submit(
                _finish_part,
                self._key,
                self.reveal,
                setup,
                serialized_response(points[a:b]),
            )
            for a, b in itertools.pairwise(cuts)
        ]
        return [(a, f.result()) for a, f in zip(cuts, futures, strict=False)]

    def cardinality(self, setup: bytes, parts: Sequence[bytes], n_items: int) -> int:
        """|client ∩ server| from the server's ONE (merged, sorted) response to one set."""
        if self.reveal:
            raise ValueError("this client was made for reveal mode")
        size = sum(count for _, count in self._finish(setup, parts, n_items))
        return max(0, min(int(size), n_items))  # clamp (openmined-psi issue #143)

    def intersection(self, setup: bytes, parts: Sequence[bytes], n_items: int) -> list[int]:
        """Positions (into the client's own items) of the items the server also holds."""
        if not self.reveal:
            raise ValueError("this client was made for cardinality mode")
        found = {
            offset + int(i)
            for offset, positions in self._finish(setup, parts, n_items)
            for i in positions
        }
        return sorted(i for i in found if 0 <= i < n_items)


class PsiServer:
    """The answering party: holds its set, learns only the client's set size."""

    def __init__(self, *, reveal: bool, workers: int = 1) -> None:
        self.reveal = reveal
        self.workers = workers
        self._server = psi.server.CreateWithNewKey(reveal)  # fresh key every run
        self._key = self._server.GetPrivateKeyBytes()

    def setup(self, items: Sequence[str], num_client_inputs: int) -> bytes:
        message = self._server.CreateSetupMessage(
            FPR, max(1, num_client_inputs), list(items), psi.DataStructure.GCS
        )
        return message.SerializeToString()

    def start(self, request: bytes) -> Callable[[], bytes]:
        """Begin the curve work on one request chunk now, on the pool, so that it overlaps the
        rest of the run (the setup, the other chunks still arriving); returns what waits for
        its response. Single-process, the work is done when waited for. The response itself
        only ever leaves through ``merged``, with the rest of its set."""
        pool = _pool(self.workers)
        if pool is None:
            return functools.partial(_process_chunk, self._key, self.reveal, request)
        return pool.submit(_process_chunk, self._key, self.reveal, request).result

    def merged(self, pending: Sequence[Callable[[], bytes]]) -> list[bytes]:
        """ONE response to a client set from its chunks' work (``start``): their responses
        merged and — in cardinality mode — re-sorted as a whole, so no response to a single
        chunk ever leaves this object. Reveal mode keeps the request's order (the client needs
        it to name its matches; that mode reveals them anyway)."""
        points: list[bytes] = []
        for wait in pending:
            points.extend(points_of(wait()))
        return points if self.reveal else sorted(points)

    def answer(self, sets: Sequence[Sequence[bytes]]) -> Iterator[list[bytes]]:
        """``merged`` for each client set, in order, its request chunks checked first with
        ``check_set`` and all of them processed on all workers."""
        for chunks in sets:
            check_set(chunks, self.reveal)
        pending = [[self.start(data) for data in chunks] for chunks in sets]
        for waits in pending:
            yield self.merged(waits)
