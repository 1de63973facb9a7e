"""Progress of a long match reaches the analyst while it runs (real hub and node processes).

should_cancel_absent matches public security's ~15,000 active registrations (two chunks of
10,000) against three answering nodes: the asking node reports its chunks done / total to the
hub through its signed channel, and the analyst's job view carries them — counts only.
"""

from __future__ import annotations

import threading

from datalab.client import Lab, _advance
from datalab.local_lab import LocalLab
from datalab.wire import JobState

RECIPE = "should_cancel_absent"


def test_progress_advances_during_a_multi_chunk_match(lab: LocalLab, analyst: Lab) -> None:
    for agency in ("public_security", "housing", "hrss", "activity"):
        lab.approve_reveal(agency, RECIPE)
    view = analyst.submit(RECIPE, mode="cardinality")
    seen: list[tuple[int, int, str]] = []
    stop = threading.Event()

    class Bar:  # what tqdm's bar is given: the test reads it back
        unit, total, n = "node", len(view.tasks), 0

        def set_postfix_str(self, text: str) -> None:
            pass

        def refresh(self) -> None:
            pass

    bar = Bar()

    def watch() -> None:
        current = view
        while not current.state.final and not stop.is_set():
            current = analyst.job(view.job_id, wait=5.0, until="change")
            _advance(bar, current)
            if current.progress is not None:
                seen.append((current.progress.done, current.progress.total, current.state.value))

    thread = threading.Thread(target=watch)
    thread.start()
    thread.join(300)
    stop.set()
    final = analyst.job(view.job_id)
    assert final.state is JobState.RELEASED and final.progress is None  # gone once it ended
    total = seen[-1][1]
    assert total >= 12  # 2 chunks x (request + response) x 3 answering nodes
    during = [
        done for done, _, state in seen if 0 < done < total and state in ("queued", "running")
    ]
    assert len(set(during)) >= 2, seen  # several steps seen while the match ran
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)  # never goes back
    assert bar.unit == "chunk" and bar.total == total and bar.n == total
