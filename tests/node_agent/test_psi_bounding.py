"""Contribution bounding on the asking node for a differentially private PSI count."""

from __future__ import annotations

from node_agent.psi_query_sets import bound_per_key


def test_at_most_k_areas_per_key_and_other_keys_untouched() -> None:
    elements = [
        "id:A@g3",
        "id:A@g1",
        "id:A@g2",
        "nbs:Li|1990-01-01|F@g1",
        "nbs:Li|1990-01-01|F@g2",
        "id:B@g9",
    ]
    assert bound_per_key(elements, 1) == ["id:A@g1", "id:B@g9", "nbs:Li|1990-01-01|F@g1"]
    two = bound_per_key(elements, 2)
    assert two == [
        "id:A@g1",
        "id:A@g2",
        "id:B@g9",
        "nbs:Li|1990-01-01|F@g1",
        "nbs:Li|1990-01-01|F@g2",
    ]
    # which areas are kept depends only on the person's own elements, not on the others
    assert [e for e in bound_per_key(elements[:3], 1)] == ["id:A@g1"]
