"""Faults with real processes: a node that is down fails the job with a clear message; a hub
restart loses no job and no log entry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from datalab.client import Lab
from datalab.errors import JobFailed
from datalab_cli.local_lab import ANALYST, AUDITOR, LocalLab


def _small_lab(city: Path, state: Path, timeout: float) -> LocalLab:
    return LocalLab(
        city_dir=city,
        state_dir=state,
        agencies=["civil_affairs", "health"],
        node_timeout_s=timeout,
    )


@pytest.fixture
def quick_timeout_lab(city: Path, tmp_path: Path) -> Iterator[LocalLab]:
    with _small_lab(city, tmp_path, timeout=3.0) as lab:
        yield lab


@pytest.fixture
def patient_lab(city: Path, tmp_path: Path) -> Iterator[LocalLab]:
    with _small_lab(city, tmp_path, timeout=60.0) as lab:
        yield lab


def test_a_node_that_is_down_fails_the_job_naming_it(quick_timeout_lab: LocalLab) -> None:
    lab = quick_timeout_lab
    with Lab(lab.url, lab.tokens[ANALYST]) as analyst:
        assert len(analyst.run("key_groups", group="elderly", progress=False)) > 0
        lab.stop_node("civil_affairs")
        with pytest.raises(JobFailed) as err:
            analyst.run("key_groups", group="elderly", progress=False, timeout=60)
        assert "civil_affairs" in err.value.message
        assert "did not answer" in err.value.message
        # the other agency's jobs still run
        assert len(analyst.run("key_groups", group="disability", progress=False)) > 0


def test_hub_restart_loses_no_job_and_no_log_entry(patient_lab: LocalLab) -> None:
    lab = patient_lab
    analyst = Lab(lab.url, lab.tokens[ANALYST])
    auditor = Lab(lab.url, lab.tokens[AUDITOR])
    done = analyst.run("key_groups", group="elderly", level="street", progress=False)
    done_id = done.attrs["provenance"].job_id
    lab.stop_node("health")
    pending = analyst.submit("key_groups", group="pregnancy", level="district")
    log_before = auditor.audit()
    lab.stop_hub()
    lab.start_hub()
    lab.start_node("health")
    analyst.close()
    auditor.close()
    with Lab(lab.url, lab.tokens[ANALYST]) as analyst2, Lab(lab.url, lab.tokens[AUDITOR]) as aud2:
        again = analyst2.job(done_id)
        assert again.state.value == "released"
        assert again.provenance is not None
        assert again.provenance.result_sha256 == done.attrs["provenance"].result_sha256
        finished = analyst2.job(pending.job_id)
        for _ in range(20):
            if finished.state.final:
                break
            finished = analyst2.job(pending.job_id, wait=5)
        assert finished.state.value == "released", finished.error
        log_after = aud2.audit()
        assert len(log_after) > len(log_before)
        kept = log_after.set_index("seq").loc[log_before["seq"], "hash"]
        assert list(kept) == list(log_before["hash"])
        assert aud2.verify_audit()["ok"] is True
