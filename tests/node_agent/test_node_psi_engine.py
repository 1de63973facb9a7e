"""The PSI engine on the real openmined-psi: both roles, chunks across processes, checks."""

from __future__ import annotations

import pytest

from node_agent import psi as engine
from node_agent.psi import PsiClient, PsiRefused, PsiServer

CLIENT = [f"id:{i:018d}@440103001001001" for i in range(0, 2_500)]
SERVER = [f"id:{i:018d}@440103001001001" for i in range(1_000, 4_000)]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "CHUNK_ITEMS", 600)


def _run(reveal: bool, workers: int) -> int | list[int]:
    client = PsiClient(reveal=reveal, workers=workers)
    server = PsiServer(reveal=reveal, workers=workers)
    requests = client.requests(CLIENT)
    responses = server.process(requests)
    setup = server.setup(SERVER, len(CLIENT))
    if reveal:
        return client.intersection(setup, responses, len(CLIENT))
    return client.cardinality(setup, responses, len(CLIENT))


def test_cardinality_single_process_and_chunked_across_processes_agree(small_chunks) -> None:
    assert _run(False, 1) == 1_500
    assert _run(False, 2) == 1_500


def test_reveal_gives_the_clients_own_positions_in_order(small_chunks) -> None:
    assert _run(True, 2) == list(range(1_000, 2_500))


def test_every_run_has_a_fresh_key() -> None:
    a, b = PsiClient(reveal=False), PsiClient(reveal=False)
    assert a.requests(CLIENT[:5]) != b.requests(CLIENT[:5])


def test_a_request_repeating_an_item_is_refused() -> None:
    padded = PsiClient(reveal=False).requests(["target"] * 30)[0]
    with pytest.raises(PsiRefused, match="repeats"):
        PsiServer(reveal=False).process([padded])


def test_a_request_in_another_mode_or_garbage_is_refused() -> None:
    request = PsiClient(reveal=True).requests(CLIENT[:30])
    with pytest.raises(PsiRefused, match="reveal flag"):
        PsiServer(reveal=False).process(request)
    with pytest.raises(PsiRefused, match="parse"):
        PsiServer(reveal=False).process([b"\xff\x00garbage"])


def test_responses_that_do_not_answer_every_item_are_refused() -> None:
    client, server = PsiClient(reveal=False), PsiServer(reveal=False)
    requests = client.requests(CLIENT[:100])
    setup = server.setup(SERVER, 100)
    with pytest.raises(PsiRefused, match="every requested item"):
        client.cardinality(setup, server.process(requests), 101)
