"""Registrations nobody sees any more: one asking node, THREE answering nodes, one job.

Real hub and node processes: public security's node matches its active registrations against
housing's tenancies, hrss's contributions and the activity source's events, each in its own
openmined-psi run through the relay, and flags those none of them holds. Scored against the
synthetic city's should_cancel flags, which no node loads.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from datalab.client import Lab
from datalab.errors import JobRefused
from datalab.local_lab import LocalLab
from datalab.synth.score import score_lists

RECIPE = "should_cancel_absent"
PARTIES = ("public_security", "housing", "hrss", "activity")


def test_counts_need_every_agencys_reveal_approval(lab: LocalLab, analyst: Lab) -> None:
    for agency in PARTIES:
        lab.approve_all(agency)  # the plain approval: no reveal
    with pytest.raises(JobRefused) as err:
        analyst.run(RECIPE, level="district", progress=False)
    assert "reveal" in err.value.message


def test_absent_registrations_scored_against_the_truth(
    lab: LocalLab, analyst: Lab, city: Path
) -> None:
    for agency in PARTIES:
        lab.approve_reveal(agency, RECIPE)
    per = analyst.run(RECIPE, level="district", progress=False)
    assert list(per.columns) == ["district", "absent", "checked"]
    assert per.attrs["provenance"].agencies == sorted(PARTIES)
    assert (
        list(
            lab.node_state("public_security").glob(
                f"verification/{per.attrs['provenance'].job_id}*"
            )
        )
        == []
    )
    frame = analyst.run(RECIPE, mode="reveal", level="district", progress=False)
    path = lab.verification_list("public_security", frame.attrs["provenance"].job_id)
    score = score_lists(city, [path], "should_cancel")
    left = score_lists(city, [path], "should_cancel", evidence="left_city")
    print(score.line(), left.line(), sep="\n")
    assert frame["absent"].sum() >= score.listed  # withheld cells aside, the same people
    assert score.listed > 10
    # measured at 20,000 people, seed 11: precision 31 % (people no agency sees although they
    # live here: not working, not renting, not seen by the activity source), recall 89 %
    assert score.precision >= 0.25 and score.recall >= 0.8 and left.recall >= 0.8
