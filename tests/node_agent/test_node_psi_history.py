"""The answering node's minimum-change rule over keyed digests of client sets."""

from __future__ import annotations

from pathlib import Path

from node_agent.psi_min_change import MinimumChange, as_set, keyed_digests, summary_key

ITEMS = [f"id:{i:018d}@440103001" for i in range(200)]


def test_a_set_plus_one_target_is_refused_an_identical_or_distant_set_is_not(
    tmp_path: Path,
) -> None:
    key = summary_key(tmp_path / "client")
    rule = MinimumChange(tmp_path / "server" / "psi-history.sqlite")
    first = as_set(keyed_digests(key, ITEMS))
    assert rule.check_and_record("housing", [first], 10) is None
    assert rule.check_and_record("housing", [first], 10) is None  # same set: nothing new
    plus_one = as_set(keyed_digests(key, [*ITEMS, "id:target@440103001"]))
    reason = rule.check_and_record("housing", [plus_one], 10)
    assert reason is not None and "minimum-change" in reason
    minus_one = as_set(keyed_digests(key, ITEMS[1:]))
    assert rule.check_and_record("housing", [minus_one], 10) is not None
    assert rule.check_and_record("activity", [plus_one], 10) is None  # another counterparty
    distant = as_set(keyed_digests(key, ITEMS[:150]))
    assert rule.check_and_record("housing", [distant], 10) is None
    rule.close()


def test_digests_are_keyed_and_the_store_never_holds_items(tmp_path: Path) -> None:
    key = summary_key(tmp_path)
    assert (
        summary_key(tmp_path) == key and (tmp_path / "psi_summary.key").stat().st_mode & 0o77 == 0
    )
    assert keyed_digests(key, ITEMS[:3]) != keyed_digests(b"another key" * 3, ITEMS[:3])
    rule = MinimumChange(tmp_path / "h.sqlite")
    rule.check_and_record("housing", [as_set(keyed_digests(key, ITEMS))], 10)
    rule.close()
    stored = (tmp_path / "h.sqlite").read_bytes()
    assert b"440103001" not in stored and b"id:" not in stored
