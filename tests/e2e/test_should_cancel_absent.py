"""Registrations nobody sees any more: one asking node, FIVE answering nodes, one job.

Real hub and node processes: public security's node matches its ~15,000 active registrations
(two chunks of 10,000) against housing's tenancies, hrss's contributions, the activity
source's events, education's pupils and civil affairs' benefit recipients, each in its own
openmined-psi run through the relay, and flags those none of them holds. Scored against the
synthetic city's should_cancel flags, which no node loads. The same run shows the match's
progress reaching the analyst while it runs (counts only).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from datalab.client import Lab, _advance
from datalab.errors import JobRefused
from datalab.wire import JobState, JobView
from datalab_cli.local_lab import LocalLab
from synthetic_city.score import score_lists

RECIPE = "should_cancel_absent"
PARTIES = ("public_security", "housing", "hrss", "activity", "education", "civil_affairs")


def test_counts_need_every_agencys_reveal_approval(lab: LocalLab, analyst: Lab) -> None:
    for agency in PARTIES:
        lab.approve_all(agency)  # the plain approval: no reveal
    with pytest.raises(JobRefused) as err:
        analyst.run(RECIPE, level="district", progress=False)
    assert "reveal" in err.value.message


class _Bar:
    """Stands in for the tqdm bar ``Lab.run`` shows: the test reads back what it was given."""

    unit, total, n = "node", 4, 0

    def set_postfix_str(self, text: str) -> None:
        pass

    def refresh(self) -> None:
        pass


def _watch(analyst: Lab, view: JobView, bar: _Bar) -> tuple[JobView, list[tuple[int, int, str]]]:
    """Long-poll the job as ``Lab.run`` does, noting every progress report seen."""
    seen: list[tuple[int, int, str]] = []
    while not view.state.final:
        view = analyst.job(view.job_id, wait=5.0, until="change")
        _advance(bar, view)
        if view.progress is not None:
            seen.append((view.progress.done, view.progress.total, view.state.value))
    return view, seen


def test_absent_registrations_with_progress_and_scored_against_the_truth(
    lab: LocalLab, analyst: Lab, city: Path
) -> None:
    for agency in PARTIES:
        lab.approve_reveal(agency, RECIPE)
    submitted = analyst.submit(RECIPE, level="district")
    bar = _Bar()
    final, seen = _watch(analyst, submitted, bar)  # the nodes work in their own processes
    assert final.state is JobState.RELEASED and final.progress is None  # gone once it ended
    assert final.result is not None and final.result.columns == ["district", "absent", "checked"]
    assert final.provenance is not None and final.provenance.agencies == sorted(PARTIES)
    # progress: 2 chunks x (request + response) x 5 answering nodes, seen moving while running
    total = seen[-1][1]
    assert total >= 20
    during = {done for done, _, state in seen if 0 < done < total and not JobState(state).final}
    assert len(during) >= 2, seen
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)  # never goes back
    assert bar.unit == "chunk" and bar.total == total and bar.n == total
    # counts only: no verification list unless the analyst asked for reveal
    kept = lab.node_state("public_security") / "verification" / f"{final.job_id}.parquet"
    assert not kept.exists()

    frame = analyst.run(RECIPE, mode="reveal", level="district", progress=False)
    path = lab.verification_list("public_security", frame.attrs["provenance"].job_id)
    score = score_lists(city, [path], "should_cancel")
    left = score_lists(city, [path], "should_cancel", evidence="left_city")
    print(score.line(), left.line(), sep="\n")
    assert frame["absent"].sum() >= score.listed  # withheld cells aside, the same people
    assert score.listed > 10
    # measured at 20,000 people, seed 11: precision 42 % (people no agency sees although they
    # live here: not working, renting, at school nor on a benefit, not seen by the activity
    # source; 31 % with the first three agencies only), recall 89 %
    assert score.precision >= 0.36 and score.recall >= 0.8 and left.recall >= 0.8
