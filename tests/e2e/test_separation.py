"""Person–household separation end to end: real hub, real node processes, real openmined-psi.

The separation flag is computed as a difference of two matches of the same people in one job
(household registration in the city − household registration where they live) and scored
against the synthetic city's ground truth, which no node loads.
"""

from __future__ import annotations

from pathlib import Path

from datalab.client import Lab
from datalab_cli.local_lab import LocalLab
from synthetic_city.score import score_lists

RECIPE = "separation"


def test_per_area_counts_add_up_and_separated_is_within_checked(analyst: Lab) -> None:
    per = analyst.run(RECIPE, source="tenancy", level="district", progress=False)
    one = analyst.run(RECIPE, source="tenancy", mode="cardinality", progress=False)
    assert list(per.columns) == ["district", "separated", "checked"]
    assert list(one.columns) == ["separated", "checked"]
    assert per["separated"].sum() == one["separated"].iloc[0]
    assert per["checked"].sum() == one["checked"].iloc[0]
    assert 0 < one["separated"].iloc[0] < one["checked"].iloc[0]
    # "another area" at district level is a subset of "another grid"
    coarse = analyst.run(
        RECIPE, source="tenancy", mode="cardinality", match_level="district", progress=False
    )
    assert coarse["separated"].iloc[0] < one["separated"].iloc[0]
    assert per.attrs["provenance"].agencies == ["housing", "public_security"]


def test_separation_scored_against_the_truth(lab: LocalLab, analyst: Lab, city: Path) -> None:
    for agency in ("housing", "activity", "public_security"):
        lab.approve_reveal(agency, RECIPE)
    lists = {}
    for source, agency in (("tenancy", "housing"), ("night_activity", "activity")):
        frame = analyst.run(RECIPE, source=source, mode="reveal", level="district", progress=False)
        assert list(frame.columns) == ["district", "separated", "checked"]
        lists[source] = lab.verification_list(agency, frame.attrs["provenance"].job_id)
    scores = {
        name: score_lists(city, paths, "separation", truth_area="home_grid")
        for name, paths in (
            ("tenancy", [lists["tenancy"]]),
            ("night", [lists["night_activity"]]),
            ("both", [lists["tenancy"], lists["night_activity"]]),
        )
    }
    for score in scores.values():
        print(score.line())
    # measured at 20,000 people, seed 11: precision 100 % for both; recall 11 % (tenancy: few
    # locals rent), 71 % (night), 74 % (both)
    assert scores["tenancy"].listed > 10 and scores["night"].listed > 10
    assert scores["tenancy"].precision >= 0.9 and scores["night"].precision >= 0.9
    assert scores["both"].recall >= 0.65
    assert scores["both"].recall > scores["night"].recall  # tenancy adds people
