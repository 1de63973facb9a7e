"""The data-dependent refusal leak, as an attack: a differentially private release must depend
on the data only through its noise. Were a DP query over one person refused ("query set too
small") while one over many is answered, the refusal itself would say "fewer than 10 match" —
exactly what the noise is there to hide, and outside the epsilon charged. Through the public
client on the live lab: a query set of one, of none and of a whole grid all come back with the
same shape, released and charged alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pandas as pd
import pytest

from datalab.client import Lab
from datalab_cli.hub_command import create_user
from datalab_cli.local_lab import LocalLab
from lab_server.settings import HubSettings
from tests.attacks.test_privacy_attacks import KIND, holder, population, target_person
from tests.support.proxy import RecordingProxy

__all__ = ["population"]  # the module fixture, shared


@pytest.fixture
def attacker(lab: LocalLab, proxy: RecordingProxy) -> Iterator[Lab]:
    name = f"mallory-{uuid.uuid4().hex[:8]}"
    token = create_user(HubSettings(state_dir=lab.hub_state()), name, "analyst", None)
    with Lab(proxy.url, token) as client:
        yield client


def test_a_tiny_dp_query_set_is_answered_like_a_large_one(
    attacker: Lab, population: pd.DataFrame
) -> None:
    grid, age, sex = target_person(population)
    in_grid = ["grid", "eq", grid]
    sets = {
        "whole grid": [in_grid],
        "one person": [in_grid, ["age", "eq", age], ["sex", "eq", sex]],
        "nobody": [in_grid, ["age", "eq", age], ["sex", "eq", "M" if sex == "F" else "F"]],
    }
    here = population[population["grid"] == grid]
    truth = {
        "whole grid": len(here),
        "one person": int(((here["age"] == age) & (here["sex"] == sex)).sum()),
        "nobody": int(((here["age"] == age) & (here["sex"] != sex)).sum()),
    }
    assert truth["whole grid"] >= 30 and truth["one person"] == 1 and truth["nobody"] == 0
    shapes = {}
    for label, filters in sets.items():
        frame = attacker.run(
            "dp_aggregate",
            kind=KIND,
            epsilon=0.2,
            group_by=["sex"],
            filters=filters,
            agencies=holder(grid),
            progress=False,
        )  # no JobRefused: the node no longer refuses a small DP query set
        provenance = frame.attrs["provenance"]
        assert provenance.epsilon == 0.2 and provenance.suppressed_cells <= 2
        shapes[label] = (list(frame.columns), sorted(frame["sex"]))
    assert len(set(map(repr, shapes.values()))) == 1, shapes  # one shape for all three
    assert shapes["nobody"] == (["sex", "n"], ["F", "M"])
    spent = attacker.budget()["spent"]
    assert spent.max() == pytest.approx(0.6)  # each release charged, whatever its size
