"""Cross-table attack: several *different* tables of the same people released to one analyst.

Each table is protected on its own (small cells and their complements withheld); the question
is whether, together, they let the attacker narrow a withheld cell of one table through the
released cells of the others. The attacker asks, for the smallest district, grid × age_band,
grid × is_migrant, and grid × age_band among migrants and among non-migrants (each at grid and
at district level), then solves — over the finest cube grid × age_band × is_migrant that all of
them are sums of — the linear program min/max of every withheld cell subject to every released
number (and to the zeros that absent groups reveal). A query the lab refuses (query auditing)
simply adds nothing; the tables are asked in two orders, since what auditing refuses depends
on what was released first. Asserts that no withheld cell's feasible interval is narrower than
``min_cell``.
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
from datalab.local_lab import LocalLab
from lab_server.cli import create_user
from lab_server.settings import HubSettings
from tests.attacks.test_privacy_attacks import KIND, MIN_CELL, holder, population
from tests.support.proxy import RecordingProxy

__all__ = ["population"]  # the module fixture, shared

BANDS = "age_band"
MIGRANT = "is_migrant"


@pytest.fixture
def attacker(lab: LocalLab, proxy: RecordingProxy) -> Iterator[Lab]:
    name = f"mallory-{uuid.uuid4().hex[:8]}"
    token = create_user(HubSettings(state_dir=lab.hub_state()), name, "analyst", None)
    with Lab(proxy.url, token) as client:
        yield client


@pytest.mark.parametrize("order", ["coarse first", "filtered first"])
def test_linear_program_over_different_tables_of_the_same_people_cannot_pin_a_cell(
    attacker: Lab, population: pd.DataFrame, order: str
) -> None:
    district = population["grid"].str[: CODE_LENGTH["district"]].value_counts().index[-1]
    here = population[population["grid"].str.startswith(district)]
    grids = sorted(here["grid"].unique())
    bands = sorted(population[BANDS].unique())
    cube = list(itertools.product(grids, bands, [False, True]))  # the attacker's unknowns

    # (group_by beyond the area, extra filter, which cube cells a row of it sums)
    tables: list[tuple[list[str], list[list[object]], bool | None]] = [
        ([BANDS], [], None),
        ([MIGRANT], [], None),
        ([BANDS], [[MIGRANT, "eq", True]], True),
        ([BANDS], [[MIGRANT, "eq", False]], False),
    ]
    if order == "filtered first":  # what query auditing refuses depends on what came first
        tables.reverse()
    rows: list[np.ndarray] = []
    values: list[float] = []
    withheld: list[tuple[str, np.ndarray]] = []
    refused = 0
    for (keys, extra, only), level in itertools.product(tables, ["district", "grid"]):
        try:
            table = attacker.run(
                "aggregate",
                kind=KIND,
                group_by=["grid", *keys],
                level=level,
                filters=[["grid", "eq", district], *extra],
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
                withheld.append((f"{keys}{extra}@{level}:{key}", members))
            else:
                rows.append(members)
                values.append(float(record["n"]))
        # a group absent from a released table holds nobody: the attacker knows that too
        areas = sorted({g[:width] for g in grids})
        domains = [areas, *(bands if k == BANDS else [False, True] for k in keys)]
        for key in itertools.product(*domains):
            if key not in seen:
                rows.append(_members(cube, width, keys, only, key))
                values.append(0.0)
    assert refused < 8, "the lab refused everything: the attack would mean nothing"
    assert withheld, "the tables should have withheld cells for the attack to mean much"
    a_eq, b_eq = np.array(rows), np.array(values)
    pinned = []
    for label, objective in withheld:
        low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        high = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        assert low.status == 0 and high.status == 0, label
        if -high.fun - low.fun < MIN_CELL - 1e-6:
            pinned.append((label, low.fun, -high.fun))
    assert not pinned, pinned


def _members(
    cube: list[tuple[str, str, bool]],
    width: int,
    keys: list[str],
    only: bool | None,
    key: tuple[object, ...],
) -> np.ndarray:
    """Which cube cells (grid, band, migrant) a released row (area, *keys) is the sum of."""
    area, *rest = key
    wanted = dict(zip(keys, rest, strict=True))
    return np.array(
        [
            grid[:width] == area
            and wanted.get(BANDS, band) == band
            and wanted.get(MIGRANT, migrant) == migrant
            and (only is None or migrant == only)
            for grid, band, migrant in cube
        ],
        dtype=float,
    )
