"""The PSI engine on the real openmined-psi: both roles, chunks across processes, checks."""

from __future__ import annotations

import pytest

from node_agent import psi_engine as engine
from node_agent.psi_engine import PsiClient, PsiRefused, PsiServer, response_parts

CLIENT = [f"id:{i:018d}@440103001001001" for i in range(0, 2_500)]
SERVER = [f"id:{i:018d}@440103001001001" for i in range(1_000, 4_000)]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "CHUNK_ITEMS", 600)
    monkeypatch.setattr(engine, "MIN_PART_ITEMS", 500)


def _run(reveal: bool, workers: int) -> int | list[int]:
    client = PsiClient(reveal=reveal, workers=workers)
    server = PsiServer(reveal=reveal, workers=workers)
    requests = client.requests(CLIENT)
    assert len(requests) == 5  # chunks of 600
    (points,) = server.answer([requests])
    parts = response_parts(points)
    setup = server.setup(SERVER, len(CLIENT))
    if reveal:
        return client.intersection(setup, parts, len(CLIENT))
    return client.cardinality(setup, parts, len(CLIENT))


def test_cardinality_single_process_and_chunked_across_processes_agree(small_chunks) -> None:
    assert _run(False, 1) == 1_500
    assert _run(False, 2) == 1_500


def test_reveal_gives_the_clients_own_positions_in_order(small_chunks) -> None:
    assert _run(True, 1) == list(range(1_000, 2_500))
    assert _run(True, 2) == list(range(1_000, 2_500))  # parts finished apart, offsets kept


def test_the_server_answers_each_set_once_merged_and_sorted_as_a_whole(small_chunks) -> None:
    """No response to one chunk leaves the server: a set of 5 chunks gets ONE answer, every
    point of it, sorted across the chunks (in cardinality mode), so the client cannot tell
    which of its chunks a point answers."""
    client, server = PsiClient(reveal=False, workers=2), PsiServer(reveal=False, workers=2)
    sets = [client.requests(CLIENT), client.requests(CLIENT[:700])]
    answers = list(server.answer(sets))
    assert [len(a) for a in answers] == [2_500, 700]
    for points in answers:
        assert points == sorted(points) and len(set(points)) == len(points)
    # each chunk's own response is sorted within the chunk; the merged answer is not their
    # concatenation (which is what an asking node could have finished chunk by chunk)
    per_chunk = [p for r in sets[0] for p in sorted(engine.points_of(_process(server, r)))]
    assert sorted(per_chunk) == answers[0] and per_chunk != answers[0]
    # reveal mode keeps the request's order (the client names its own matches there)
    reveal_server = PsiServer(reveal=True)
    (in_order,) = reveal_server.answer([PsiClient(reveal=True).requests(CLIENT)])
    assert len(in_order) == 2_500 and in_order != sorted(in_order)


def _process(server: PsiServer, request: bytes) -> bytes:
    return engine._process_chunk(server._key, server.reveal, request)


def test_every_run_has_a_fresh_key() -> None:
    a, b = PsiClient(reveal=False), PsiClient(reveal=False)
    assert a.requests(CLIENT[:5]) != b.requests(CLIENT[:5])


def test_a_request_repeating_an_item_is_refused(small_chunks) -> None:
    padded = PsiClient(reveal=False).requests(["target"] * 30)
    with pytest.raises(PsiRefused, match="repeats"):
        next(PsiServer(reveal=False).answer([padded]))
    # the same target once in every chunk: no chunk repeats it, the set does
    client = PsiClient(reveal=False)
    spread = client.requests([*CLIENT[:599], "target", *CLIENT[600:1199], "target"])
    assert len(spread) == 2
    with pytest.raises(PsiRefused, match="repeats"):
        engine.check_set(spread, reveal=False)


def test_a_request_in_another_mode_or_garbage_is_refused() -> None:
    request = PsiClient(reveal=True).requests(CLIENT[:30])
    with pytest.raises(PsiRefused, match="reveal flag"):
        next(PsiServer(reveal=False).answer([request]))
    with pytest.raises(PsiRefused, match="parse"):
        next(PsiServer(reveal=False).answer([[b"\xff\x00garbage"]]))


def test_responses_that_do_not_answer_every_item_are_refused() -> None:
    client, server = PsiClient(reveal=False), PsiServer(reveal=False)
    requests = client.requests(CLIENT[:100])
    setup = server.setup(SERVER, 100)
    (points,) = server.answer([requests])
    with pytest.raises(PsiRefused, match="every requested item"):
        client.cardinality(setup, response_parts(points), 101)
