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
  core, all under ONE key per run; the client merges the chunks' responses (re-sorted in
  cardinality mode, as the server sorts a single response) and computes the result once, so it
  never learns how many matches fell in a chunk.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from multiprocessing import get_context

import private_set_intersection.python as psi

#: Items per request chunk: 35 bytes per blinded point, so a chunk stays well under the hub's
#: 1 MiB body limit once base64-encoded.
CHUNK_ITEMS = 10_000
#: Chance of a false positive over the whole query (openmined-psi divides it per element).
FPR = 1e-9


class PsiRefused(Exception):
    """A PSI message that the receiving party will not process (malformed or crafted)."""


def default_workers() -> int:
    return os.cpu_count() or 1


def chunked(items: Sequence[str], size: int = CHUNK_ITEMS) -> list[Sequence[str]]:
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
                max_workers=workers, mp_context=get_context("forkserver")
            )
            atexit.register(pool.shutdown, cancel_futures=True)
        return pool


def warm_up(workers: int) -> None:
    """Start the pool's worker processes now (a node does this at start), so the first match
    does not pay their start-up."""
    pool = _pool(workers)
    if pool is not None:
        for future in [pool.submit(_noop) for _ in range(workers)]:
            future.result()


def _noop() -> None:
    return None


# ------------------------------------------------------------------ worker functions


def _request_chunk(key: bytes, reveal: bool, items: Sequence[str]) -> bytes:
    client = psi.client.CreateFromKey(key, reveal)
    return client.CreateRequest(list(items)).SerializeToString()


def _process_chunk(key: bytes, reveal: bool, request: bytes) -> bytes:
    server = psi.server.CreateFromKey(key, reveal)
    return server.ProcessRequest(parse_request(request, reveal)).SerializeToString()


def parse_request(data: bytes, reveal: bool) -> psi.Request:
    """A client's request, checked: parseable, the agreed reveal flag, no repeated point.

    A repeated blinded point means a repeated item: a client padding a small set up to the
    minimum size with copies of one target (the points are deterministic under one key).
    """
    request = psi.Request()
    try:
        request.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise PsiRefused("a PSI request did not parse") from exc
    if request.reveal_intersection != reveal:
        raise PsiRefused("the PSI request's reveal flag differs from the approved mode")
    points = request.encrypted_elements
    if len(set(points)) != len(points):
        raise PsiRefused("the PSI request repeats an item (a padded or crafted set)")
    return request


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

    def _merged(self, responses: Sequence[bytes], sort: bool) -> psi.Response:
        points: list[bytes] = []
        for data in responses:
            response = psi.Response()
            try:
                response.ParseFromString(data)
            except Exception as exc:
                raise PsiRefused("a PSI response did not parse") from exc
            points.extend(response.encrypted_elements)
        merged = psi.Response()
        merged.encrypted_elements.extend(sorted(points) if sort else points)
        return merged

    def _setup(self, setup: bytes) -> psi.ServerSetup:
        message = psi.ServerSetup()
        try:
            message.ParseFromString(setup)
        except Exception as exc:
            raise PsiRefused("the PSI setup did not parse") from exc
        return message

    def cardinality(self, setup: bytes, responses: Sequence[bytes], n_items: int) -> int:
        """|client ∩ server| from the merged, re-sorted responses of all chunks of one set."""
        if self.reveal:
            raise ValueError("this client was made for reveal mode")
        merged = self._merged(responses, sort=True)
        if len(merged.encrypted_elements) != n_items:
            raise PsiRefused("the PSI responses do not answer every requested item")
        size = self._client.GetIntersectionSize(self._setup(setup), merged)
        return max(0, min(int(size), n_items))  # clamp (openmined-psi issue #143)

    def intersection(self, setup: bytes, responses: Sequence[bytes], n_items: int) -> list[int]:
        """Positions (into the client's own items) of the items the server also holds."""
        if not self.reveal:
            raise ValueError("this client was made for cardinality mode")
        merged = self._merged(responses, sort=False)
        if len(merged.encrypted_elements) != n_items:
            raise PsiRefused("the PSI responses do not answer every requested item")
        found = self._client.GetIntersection(self._setup(setup), merged)
        return sorted({int(i) for i in found if 0 <= int(i) < n_items})


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

    def process(self, requests: Sequence[bytes]) -> list[bytes]:
        """Responses to the request chunks (checked first), computed on all workers."""
        return list(self.iter_process(requests))

    def iter_process(self, requests: Sequence[bytes]) -> Iterator[bytes]:
        """``process`` chunk by chunk, in order: every request is checked before the first
        response exists, then each response is yielded as soon as it is ready."""
        for data in requests:
            parse_request(data, self.reveal)
        pool = _pool(min(self.workers, len(requests)))
        if pool is None:
            for r in requests:
                yield _process_chunk(self._key, self.reveal, r)
            return
        futures = [pool.submit(_process_chunk, self._key, self.reveal, r) for r in requests]
        for f in futures:
            yield f.result()


def request_size(data: bytes) -> int:
    """How many items a serialized request holds (the server checks declared sizes)."""
    request = psi.Request()
    try:
        request.ParseFromString(data)
    except Exception as exc:
        raise PsiRefused("a PSI request did not parse") from exc
    return len(request.encrypted_elements)
