"""Cross-table attack: many *different* tables of the same people released to one analyst.

Each table is protected on its own (small cells and their complements withheld); the question
is whether, together, they let the attacker narrow a small withheld cell of one table through
the released cells of the others. For the smallest district the attacker asks every grouping of
grid by one or two of age_band, sex and is_migrant, and every grouping of grid by one of them
filtered to one value of another (e.g. age bands among migrants), at district and grid level,
in a shuffled order — 40-odd tables — then solves, over the finest cube grid × age_band × sex ×
is_migrant they are all sums of, the linear program min/max of every withheld cell subject to
every released number and to the zeros that absent groups reveal. A query the lab refuses
(query auditing) adds nothing.

This attack found a real hole: with query auditing's pairwise and greedy checks alone (and its
window of 10 earlier queries), it pinned small cells exactly — e.g. a community's count of
migrants aged 80+ = 1. The hub now solves the same linear program over its atoms before each
release (``recipes.auditing.check_linear``) and refuses a table that would narrow a small
withheld cell below ``min_cell``.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from datalab.client import Lab
from datalab.errors import JobRefused
from datalab.geography import CODE_LENGTH
from datalab_cli.hub_command import create_user
from datalab_cli.local_lab import LocalLab
from lab_server.settings import HubSettings
from tests.attacks.test_privacy_attacks import KIND, MIN_CELL, holder, population
from tests.support.proxy import RecordingProxy

__all__ = ["population"]  # the module fixture, shared

DIMS = ["age_band", "sex", "is_migrant"]
LEVELS = ["district", "grid"]


@pytest.fixture
def attacker(lab: LocalLab, proxy: RecordingProxy) -> Iterator[Lab]:
    name = f"mallory-{uuid.uuid4().hex[:8]}"
    token = create_user(HubSettings(state_dir=lab.hub_state()), name, "analyst", None)
    with Lab(proxy.url, token) as client:
        yield client


def test_linear_program_over_many_tables_of_the_same_people_cannot_pin_a_small_cell(
    attacker: Lab, population: pd.DataFrame
) -> None:
    district = population["grid"].str[: CODE_LENGTH["district"]].value_counts().index[-1]
    here = population[population["grid"].str.startswith(district)]
    domains = {
        "grid": sorted(here["grid"].unique()),
        "age_band": sorted(population["age_band"].unique()),
        "sex": ["F", "M"],
        "is_migrant": [False, True],
    }
    cube = list(itertools.product(*domains.values()))  # the attacker's unknowns
    truth_counts = here.groupby(list(domains)).size()
    truth = np.array([float(truth_counts.get(c, 0)) for c in cube])

    tables: list[tuple[list[str], dict[str, object]]] = [
        (list(keys), {}) for n in (1, 2) for keys in itertools.combinations(DIMS, n)
    ]
    for dim in DIMS:
        for value in domains[dim]:
            tables += [([other], {dim: value}) for other in DIMS if other != dim]
    order = np.random.default_rng(0).permutation(len(tables))
    rows: list[np.ndarray] = []
    values: list[float] = []
    withheld: list[tuple[str, np.ndarray]] = []
    refused = 0
    for i, level in itertools.product(order, LEVELS):
        keys, only = tables[i]
        try:
            table = attacker.run(
                "aggregate",
                kind=KIND,
                group_by=["grid", *keys],
                level=level,
                filters=[["grid", "eq", district], *([k, "eq", v] for k, v in only.items())],
                agencies=holder(district),
                progress=False,
            )
        except JobRefused:
            refused += 1
            continue
        width = CODE_LENGTH[level]
        seen: set[tuple[object, ...]] = set()
        for record in table.to_dict("records"):
            key = tuple(record[k] for k in [level, *keys])
            seen.add(key)
            members = _members(cube, width, keys, only, key)
            if pd.isna(record["n"]):
                withheld.append((f"{keys}{only}@{level}:{key}", members))
            else:
                rows.append(members)
                values.append(float(record["n"]))
        # a group absent from a released table holds nobody: the attacker knows that too
        areas = sorted({g[:width] for g in domains["grid"]})
        for key in itertools.product(areas, *(domains[k] for k in keys)):
            if key not in seen:
                rows.append(_members(cube, width, keys, only, key))
                values.append(0.0)
    a_eq, b_eq = np.array(rows), np.array(values)
    assert np.allclose(a_eq @ truth, b_eq)  # the attacker's model is right
    released = len(order) * len(LEVELS) - refused
    assert released >= 20 and refused >= 1, (released, refused)
    small = [(label, m) for label, m in withheld if 0 < m @ truth < MIN_CELL]
    assert small, "the tables should withhold small cells for the attack to mean much"
    pinned = []
    for label, objective in small:
        low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        high = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        assert low.status == 0 and high.status == 0, label
        if -high.fun - low.fun < MIN_CELL - 1e-6:
            pinned.append((label, low.fun, -high.fun))
    assert not pinned, pinned


def _members(
    cube: list[tuple[object, ...]],
    width: int,
    keys: list[str],
    only: dict[str, object],
    key: tuple[object, ...],
) -> np.ndarray:
    """Which cube cells (grid, age_band, sex, is_migrant) a released row is the sum of."""
    area, *rest = key
    wanted = {**dict(zip(keys, rest, strict=True)), **only}
    return np.array(
        [
            str(cell[0])[:width] == area
            and all(wanted.get(d, cell[1 + j]) == cell[1 + j] for j, d in enumerate(DIMS))
            for cell in cube
        ],
        dtype=float,
    )
