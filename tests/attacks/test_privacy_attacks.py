"""Attacks on disclosure control and differential privacy, through the public client against
the live lab on the synthetic city. Each test runs an attack and asserts that it fails.

Each attack runs as a fresh analyst (query auditing remembers what each analyst was released,
so attacks must not see each other's history), created like any analyst account.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from datalab.client import Lab
from datalab.errors import BudgetExhausted, InvalidParameters, JobRefused
from datalab.geography import CODE_LENGTH
from datalab_cli.hub_command import create_user
from datalab_cli.local_lab import LocalLab
from lab_server.settings import HubSettings
from tests.support.proxy import RecordingProxy

KIND = "district_population"
MIN_CELL = 10


@pytest.fixture(scope="module")
def population(city: Path) -> pd.DataFrame:
    """The god view: every district's population file, which no party of the lab can read."""
    frames = [pd.read_parquet(p / "population.parquet") for p in sorted(city.glob("district_*"))]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def attacker(lab: LocalLab, proxy: RecordingProxy) -> Iterator[Lab]:
    name = f"mallory-{uuid.uuid4().hex[:8]}"
    token = create_user(HubSettings(state_dir=lab.hub_state()), name, "analyst", None)
    with Lab(proxy.url, token) as client:
        yield client


def admin(lab: LocalLab, proxy: RecordingProxy, agency: str) -> Lab:
    return Lab(proxy.url, lab.tokens[f"admin-{agency}"])


def holder(area: str) -> list[str]:
    """The one district node holding an area (other districts would refuse an empty query)."""
    return [f"district_{area[: CODE_LENGTH['district']]}"]


def target_person(population: pd.DataFrame) -> tuple[str, int, str]:
    """Someone unique by (grid, age) in a grid where each sex, without them, has ≥ 15 people."""
    for (grid, age), n in population.groupby(["grid", "age"]).size().items():
        if n != 1:
            continue
        here = population[population["grid"] == grid]
        sex = here.loc[here["age"] == age, "sex"].iloc[0]
        by_sex = here["sex"].value_counts()
        if by_sex.get(sex, 0) - 1 >= 15 and by_sex.drop(sex).min() >= 15:
            return str(grid), int(age), str(sex)
    raise AssertionError("no suitable target in the synthetic city")


# ------------------------------------------------------------------ small cells


@pytest.mark.parametrize("level", ["city", "district", "street", "community", "grid"])
def test_no_cell_below_the_minimum_at_any_level(
    attacker: Lab, population: pd.DataFrame, level: str
) -> None:
    result = attacker.run(
        "aggregate", kind=KIND, group_by=["grid", "age_band"], level=level, progress=False
    )
    released = result.dropna(subset=["n"])
    assert (released["n"] >= MIN_CELL).all()
    if level == "city":
        truth = population.groupby("age_band").size()
        small = truth[truth < MIN_CELL]
        assert not set(small.index) & set(released["age_band"])
        return
    rolled = population.assign(area=population["grid"].str[: CODE_LENGTH[level]])
    truth = rolled.groupby(["area", "age_band"]).size()
    for area, band, n in zip(released[level], released["age_band"], released["n"], strict=True):
        assert truth[(area, band)] == n
    small = {k for k, v in truth.items() if v < MIN_CELL}
    if level in ("community", "grid"):
        assert small, "the city should have small cells at this level for the test to mean much"
    assert not small & set(zip(released[level], released["age_band"], strict=True))


# ------------------------------------------------------------------ linear programming


def test_linear_program_over_every_released_table_cannot_pin_a_suppressed_cell(
    attacker: Lab, population: pd.DataFrame
) -> None:
    """The attacker asks the grid × age_band × sex table of the smallest district and every
    coarser version of it (each area level, each subset of the other keys), then solves, for
    each withheld cell, the min and max it can take subject to every released number."""
    district = population["grid"].str[: CODE_LENGTH["district"]].value_counts().index[-1]
    in_district = [["grid", "eq", district]]
    keys = ["age_band", "sex"]

    def ask(level: str, kept: list[str]) -> pd.DataFrame:
        return attacker.run(
            "aggregate",
            kind=KIND,
            group_by=["grid", *kept],
            level=level,
            filters=in_district,
            agencies=holder(district),
            progress=False,
        )

    fine = ask("grid", keys)
    cells = [tuple(r) for r in fine[["grid", *keys]].itertuples(index=False)]
    rows: list[np.ndarray] = []
    values: list[float] = []
    for level in ["district", "street", "community", "grid"]:
        for n_kept in range(len(keys) + 1):
            for kept in itertools.combinations(keys, n_kept):
                table = ask(level, list(kept))
                for _, row in table.dropna(subset=["n"]).iterrows():
                    members = np.array(
                        [
                            c[0][: CODE_LENGTH[level]] == row[level]
                            and all(c[1 + keys.index(k)] == row[k] for k in kept)
                            for c in cells
                        ],
                        dtype=float,
                    )
                    rows.append(members)
                    values.append(float(row["n"]))
    a_eq, b_eq = np.array(rows), np.array(values)
    withheld = [i for i, n in enumerate(fine["n"]) if pd.isna(n)]
    assert withheld, "the district should have withheld cells for the attack to mean much"
    widths = []
    for i in withheld:
        objective = np.zeros(len(cells))
        objective[i] = 1
        low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        high = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        assert low.status == 0 and high.status == 0
        widths.append(-high.fun - low.fun)
    # the protection interval: no withheld cell can be narrowed below min_cell
    pinned = [(cells[i], w) for i, w in zip(withheld, widths, strict=True) if w < MIN_CELL]
    assert not pinned, (
        pinned,
        fine.attrs["provenance"].suppression,
        fine.attrs["provenance"].min_cell,
    )


# ------------------------------------------------------------------ differencing, trackers


def test_differencing_one_person_out_is_refused(attacker: Lab, population: pd.DataFrame) -> None:
    grid, age, _ = target_person(population)
    whole = attacker.run(
        "aggregate",
        kind=KIND,
        filters=[["grid", "eq", grid]],
        agencies=holder(grid),
        progress=False,
    )
    assert whole["n"].iloc[0] >= MIN_CELL
    with pytest.raises(JobRefused, match="query auditing"):
        attacker.run(
            "aggregate",
            kind=KIND,
            filters=[["grid", "eq", grid], ["age", "ne", age]],
            agencies=holder(grid),
            progress=False,
        )


def test_grouped_differencing_is_refused(attacker: Lab, population: pd.DataFrame) -> None:
    """count per grid, then count per grid without one age: the target's grid cell drops by
    one. (The age is common in the district, so the complement rule does not catch it first.)"""
    district_of = population["grid"].str[: CODE_LENGTH["district"]]
    per_grid = population.groupby(["grid", "age"]).size()
    per_district = population.groupby([district_of, "age"]).size()
    grid, age = next(
        (g, a) for (g, a), n in per_grid.items() if n == 1 and per_district[(g[:6], a)] >= 15
    )
    district = grid[: CODE_LENGTH["district"]]
    ask = {
        "kind": KIND,
        "group_by": ["grid"],
        "level": "grid",
        "agencies": holder(grid),
        "progress": False,
    }
    attacker.run("aggregate", filters=[["grid", "eq", district]], **ask)
    with pytest.raises(JobRefused, match="query auditing"):
        attacker.run("aggregate", filters=[["grid", "eq", district], ["age", "ne", age]], **ask)


def test_a_tracker_is_refused(attacker: Lab, population: pd.DataFrame) -> None:
    """count(G) − count(G ∧ sex=s ∧ age≠a) − count(G ∧ sex≠s) is the target alone; any two of
    the three are harmless, the third completes the tracker."""
    grid, age, sex = target_person(population)
    other = "M" if sex == "F" else "F"
    in_grid = ["grid", "eq", grid]
    ask = {"kind": KIND, "agencies": holder(grid), "progress": False}
    attacker.run("aggregate", filters=[in_grid], **ask)
    attacker.run("aggregate", filters=[in_grid, ["sex", "eq", sex], ["age", "ne", age]], **ask)
    with pytest.raises(JobRefused, match="query auditing"):
        attacker.run("aggregate", filters=[in_grid, ["sex", "eq", other]], **ask)


# ------------------------------------------------------------------ budget: averaging, races


def test_averaging_the_same_noisy_query_and_its_rewrites_runs_out_of_budget(
    attacker: Lab, lab: LocalLab, proxy: RecordingProxy, population: pd.DataFrame
) -> None:
    grid, _, _ = target_person(population)
    answers = []
    for _ in range(3):  # the default cap is 3.0 per dataset, 1.0 per query at most
        result = attacker.run(
            "dp_aggregate",
            kind=KIND,
            epsilon=1.0,
            filters=[["grid", "eq", grid]],
            agencies=holder(grid),
            progress=False,
        )
        answers.append(int(result["n"].iloc[0]))
        assert result.attrs["provenance"].epsilon == 1.0
    rewrites = [
        [["grid", "eq", grid]],
        [["grid", "in", [grid]]],
        [["grid", "eq", grid], ["age", "ge", 0]],
    ]
    for filters in rewrites:  # the same set, written differently: charged all the same
        with pytest.raises(BudgetExhausted, match="privacy budget exhausted"):
            attacker.run(
                "dp_aggregate",
                kind=KIND,
                epsilon=0.5,
                filters=filters,
                agencies=holder(grid),
                progress=False,
            )
    budget = attacker.budget()
    assert (budget["spent"] <= budget["cap"] + 1e-9).all()
    assert math.isclose(budget["spent"].max(), 3.0)
    assert (budget["spent"] == 0).sum() == len(budget) - 1  # only the attacked district paid
    # a new session with the same person's token does not reset anything
    with Lab(attacker.url, attacker._http.headers["Authorization"].split()[1]) as again:
        with pytest.raises(BudgetExhausted):
            again.run("dp_aggregate", kind=KIND, epsilon=0.1, agencies=holder(grid), progress=False)
        assert math.isclose(again.budget()["spent"].max(), 3.0)


def test_fifty_concurrent_dp_queries_near_the_cap_never_spend_more_than_it(
    attacker: Lab, lab: LocalLab, proxy: RecordingProxy
) -> None:
    me = attacker.whoami()["name"]
    scopes = list(attacker.budget()["scope"])
    districts = [s for s in scopes if s.startswith("dataset:district_") and "/population" in s]
    for scope in districts:
        agency = scope.split(":", 1)[1].split("/", 1)[0]
        with admin(lab, proxy, agency) as adm:
            adm.set_budget(scope, 1.0, analyst=me)
    token = attacker._http.headers["Authorization"].split()[1]

    def one(_: int) -> str:
        with Lab(attacker.url, token) as client:
            try:
                client.submit("dp_aggregate", kind=KIND, epsilon=0.3)
                return "accepted"
            except BudgetExhausted:
                return "refused"

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(one, range(50)))
    assert outcomes.count("accepted") == 3
    budget = attacker.budget().set_index("scope").loc[districts]
    assert (budget["spent"] <= budget["cap"] + 1e-9).all()
    assert np.allclose(budget["spent"], 0.9)


# ------------------------------------------------------------------ reconstruction


def test_reconstruction_from_random_subset_counts_stays_near_the_baseline(
    attacker: Lab, population: pd.DataFrame
) -> None:
    """Dinur–Nissim on the smallest grid: its women who are unique by age are addressable one
    by one (``age in [...]``); ask many counts of "migrants among these ages" for random age
    subsets and solve for each woman's bit. On exact answers the attack recovers everyone; on
    the lab's noisy answers, within the budget, it stays near guessing from the public rate."""
    rng = np.random.default_rng(5)
    grid = population["grid"].value_counts().index[-1]
    women = population[(population["grid"] == grid) & (population["sex"] == "F")]
    unique_ages = women["age"].value_counts()
    targets = women[women["age"].isin(unique_ages[unique_ages == 1].index)].sort_values("age")
    assert len(targets) >= 15
    ages = [int(a) for a in targets["age"]]
    secret = targets["is_migrant"].to_numpy(dtype=bool)
    subsets = [[a for a in ages if rng.random() < 0.5] or ages[:1] for _ in range(60)]

    def reconstruct(answers: list[tuple[list[int], float]]) -> float:
        queries = np.array([[1.0 if a in chosen else 0.0 for a in ages] for chosen, _ in answers])
        guess, *_ = np.linalg.lstsq(queries, np.array([v for _, v in answers]), rcond=None)
        return float(((guess > 0.5) == secret).mean())

    exact = [(c, float(secret[[a in c for a in ages]].sum())) for c in subsets]
    assert reconstruct(exact) == 1.0  # the attack works when answers are exact

    noisy: list[tuple[list[int], float]] = []
    for chosen in subsets:  # 60 × ε 0.05 = the whole default budget of 3
        try:
            result = attacker.run(
                "dp_aggregate",
                kind=KIND,
                epsilon=0.05,
                filters=[
                    ["grid", "eq", grid],
                    ["sex", "eq", "F"],
                    ["age", "in", chosen],
                    ["is_migrant", "eq", True],
                ],
                agencies=holder(grid),
                progress=False,
            )
        except BudgetExhausted:  # (a small query set is answered with noise, never refused)
            break
        n = result["n"].iloc[0]
        noisy.append((chosen, 0.0 if pd.isna(n) else float(n)))
    assert len(noisy) >= 20
    public_rate = float(population["is_migrant"].mean())  # a public marginal
    baseline = float((secret == (public_rate > 0.5)).mean())
    assert reconstruct(noisy) <= baseline + 0.15, (reconstruct(noisy), baseline)
    assert attacker.budget()["spent"].max() <= 3.0 + 1e-9


# ------------------------------------------------------------------ dominance


def test_no_released_sum_is_dominated_by_one_or_two_contributors(
    attacker: Lab, population: pd.DataFrame
) -> None:
    """Children and the retired earn nothing: the income of "them plus the people of one age at
    which one person earns" is that person's income, in a cell of well over 10 people."""
    grid = population["grid"].value_counts().index[-1]
    here = population[population["grid"] == grid]
    earners = here[here["monthly_income"] > 0].groupby("age").size()
    lone = next(int(a) for a, n in earners.items() if n == 1)
    nobody = [a for a in range(101) if a not in earners.index][:49]  # children, the retired
    ages = [*nobody, lone]
    result = attacker.run(
        "aggregate",
        kind=KIND,
        measure="sum",
        column="monthly_income",
        group_by=["is_migrant"],
        filters=[["grid", "eq", grid], ["age", "in", ages]],
        agencies=holder(grid),
        progress=False,
    )
    notes = result.attrs["provenance"].suppression
    assert any(n.startswith("dominance:") for n in notes), notes
    chosen = here[here["age"].isin(ages)]
    assert (chosen.groupby("is_migrant").size() >= MIN_CELL).all()  # not a small-cell case
    for migrant, total in zip(result["is_migrant"], result["sum"], strict=True):
        if pd.isna(total):
            continue
        incomes = chosen.loc[chosen["is_migrant"] == migrant, "monthly_income"].abs()
        top = [*incomes.nlargest(2).tolist(), 0.0, 0.0]
        assert top[0] + top[1] <= 0.85 * incomes.sum() + 1e-6
        assert incomes.sum() - top[0] - top[1] >= 0.10 * top[0] - 1e-6


# ------------------------------------------------------------------ bad values


@pytest.mark.parametrize(
    "params",
    [
        {"epsilon": float("nan")},
        {"epsilon": float("inf")},
        {"epsilon": -1.0},
        {"epsilon": 1e300},
        {
            "epsilon": 0.5,
            "measure": "sum",
            "column": "monthly_income",
            "lower": 0,
            "upper": float("inf"),
        },
        {"epsilon": 0.5, "measure": "sum", "column": "monthly_income", "lower": 0, "upper": 1e300},
        {"epsilon": 0.5, "filters": [["age", "gt", float("nan")]]},
    ],
)
def test_bad_values_are_refused_before_anything_is_spent(attacker: Lab, params: dict) -> None:
    with pytest.raises(InvalidParameters):
        attacker.run("dp_aggregate", kind=KIND, progress=False, **params)
    assert (attacker.budget()["spent"] == 0).all()


def test_huge_values_are_clamped_to_the_declared_bounds(attacker: Lab) -> None:
    result = attacker.run(
        "dp_aggregate",
        kind=KIND,
        epsilon=1.0,
        measure="mean",
        column="monthly_income",
        lower=0,
        upper=1.0,
        group_by=["sex"],
        progress=False,
    )
    assert result["mean"].between(0.0, 1.0).all()
