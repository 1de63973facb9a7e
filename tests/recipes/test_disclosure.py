"""Disclosure control: primary and complementary suppression, checked by hand-made tables and by
an attacker who subtracts released cells from every total a coarser query releases."""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pytest

from datalab.geography import CODE_LENGTH, LEVELS, Level
from datalab.wire import Table
from recipes.contract import Combined
from recipes.disclosure import Protected, protect

MIN = 10
Key = tuple[Any, ...]


def combined(
    rows: Sequence[Sequence[Any]],
    keys: Sequence[str],
    geo: Level | None = None,
    measures: Sequence[str] = ("n",),
) -> Combined:
    return Combined(
        table=Table(columns=[*keys, *measures], rows=[list(r) for r in rows]),
        key_columns=list(keys),
        count_column="n",
        geo_column=geo,
        geo_level=geo,
    )


def withheld(p: Protected, n_keys: int) -> set[Key]:
    count_at = n_keys
    return {tuple(r[:n_keys]) for r in p.table.rows if r[count_at] is None}


# ------------------------------------------------------------------ hand-made tables


def test_nothing_small_nothing_withheld() -> None:
    c = combined([["M", 12], ["F", 30]], ["sex"])
    p = protect(c, MIN)
    assert p.table == c.table and p.suppressed_cells == 0 and p.notes == []


def test_primary_only_when_complementary_is_off() -> None:
    c = combined([["M", 3], ["F", 30]], ["sex"])
    p = protect(c, MIN, complementary=False)
    assert p.table.rows == [["M", None], ["F", 30]]
    assert p.suppressed_cells == 1
    assert p.notes == ["primary: 1 cell below 10"]


def test_margin_complement_is_the_smallest_released_cell() -> None:
    # The analyst can ask the total without 'band' (3 + 40 + 25 + 70): the smallest other
    # cell goes with the small one.
    c = combined([["a", 3], ["b", 40], ["c", 25], ["d", 70]], ["band"])
    p = protect(c, MIN)
    assert withheld(p, 1) == {("a",), ("c",)}
    assert p.suppressed_cells == 2
    assert p.notes == [
        "primary: 1 cell below 10",
        "complementary: 1 cell so no suppressed cell can be recovered from its total without "
        "'band'",
    ]


def test_every_measure_of_a_withheld_row_is_withheld() -> None:
    c = combined(
        [["M", 3, 300.0, 100.0], ["F", 30, 600.0, 20.0]], ["sex"], measures=("n", "sum", "mean")
    )
    p = protect(c, MIN)
    assert p.table.columns == ["sex", "n", "sum", "mean"]
    assert p.table.rows == [["M", None, None, None], ["F", None, None, None]]


def test_two_small_cells_summing_below_min_cell_need_a_third() -> None:
    c = combined([["a", 3], ["b", 4], ["c", 50], ["d", 60]], ["band"])
    assert withheld(protect(c, MIN), 1) == {("a",), ("b",), ("c",)}


def test_whole_group_below_min_cell_may_be_withheld_together() -> None:
    # The total (7) is itself below 10, so the coarser query withholds it too.
    c = combined([["a", 3], ["b", 4]], ["band"])
    p = protect(c, MIN)
    assert p.suppressed_cells == 2
    assert all(n.startswith("primary") for n in p.notes)


def test_geography_siblings_and_every_level_up() -> None:
    rows = [
        ["440103001001", 3],  # street 440103001
        ["440103001002", 20],
        ["440103001003", 30],
        ["440103002001", 50],  # street 440103002
        ["440104001001", 5],  # district 440104: alone in its street
        ["440104002001", 40],
        ["440104002002", 45],
    ]
    p = protect(combined(rows, ["community"], geo="community"), MIN)
    assert withheld(p, 1) == {
        ("440103001001",),
        ("440103001002",),  # street sibling
        ("440104001001",),
        # district 440104 (released: 90) would give the 5 away as 90 - 40 - 45. Street
        # 440104002's total (85) is withheld by the street-level query (to protect street
        # 440104001 = 5 under the same district), so 40 need not be hidden from 45.
        ("440104002001",),
    }
    assert p.notes[0] == "primary: 2 cells below 10"
    assert p.notes[1].startswith("complementary: 2 cells")
    assert "street total" in p.notes[1]


def test_geography_crossed_with_a_key_is_a_two_by_two() -> None:
    rows = [
        ["440103001001", "M", 3],
        ["440103001002", "M", 20],
        ["440103001001", "F", 30],
        ["440103001002", "F", 40],
    ]
    p = protect(combined(rows, ["community", "sex"], geo="community"), MIN)
    assert p.suppressed_cells == 4


def test_constant_keys_are_ignored() -> None:
    # key_groups' 'group' column holds one value: dropping it gives the same numbers.
    rows = [["440103001001", "elderly", 3], ["440103001002", "elderly", 20]]
    rows += [["440103001003", "elderly", 30]]
    p = protect(combined(rows, ["community", "group"], geo="community"), MIN)
    assert withheld(p, 2) == {("440103001001", "elderly"), ("440103001002", "elderly")}
    assert not any(n.startswith("warning") for n in p.notes)


def test_sole_member_used_as_complement_is_flagged() -> None:
    # (c2, M) = 20 is the only cell of community c2's total and street M's other cell: its
    # value is public from the query without 'sex', so the table is too sparse.
    rows = [
        ["440103001001", "M", 3],
        ["440103001001", "F", 30],
        ["440103001002", "M", 20],
    ]
    p = protect(combined(rows, ["community", "sex"], geo="community"), MIN)
    assert any(n.startswith("warning:") for n in p.notes)


def test_deterministic_whatever_the_row_order() -> None:
    rng = random.Random(7)
    rows = [
        [f"4401030010{c:02d}", s, rng.choice([2, 5, 11, 15, 40, 80])]
        for c in range(1, 9)
        for s in ("M", "F")
    ]
    first = protect(combined(rows, ["community", "sex"], geo="community"), MIN)
    for _ in range(5):
        shuffled = rows[:]
        rng.shuffle(shuffled)
        again = protect(combined(shuffled, ["community", "sex"], geo="community"), MIN)
        assert withheld(again, 2) == withheld(first, 2)
        assert again.notes == first.notes


def test_missing_count_is_withheld() -> None:
    p = protect(combined([["M", None], ["F", 30], ["X", 40]], ["sex"]), MIN)
    assert withheld(p, 1) == {("M",), ("F",)}


# ------------------------------------------------------------------ the attacker

KEYS = ("sex", "band")
Cells = dict[Key, int]


def random_city(seed: int, sparse: bool) -> Cells:
    """Counts per (grid, sex, band): many small cells, some absent (structural zeros)."""
    rng = random.Random(seed)
    low = 1 if sparse else 2
    grids: list[str] = []
    for d in range(1, rng.randint(2, 3) + 1):
        for s in range(1, rng.randint(low, 3) + 1):
            for c in range(1, rng.randint(low, 3) + 1):
                for g in range(1, rng.randint(low, 3) + 1):
                    grids.append(f"4401{d:02d}{s:03d}{c:03d}{g:03d}")
    cells: Cells = {}
    for grid in grids:
        for sex in ("M", "F"):
            for band in ("young", "adult", "old"):
                if sparse and rng.random() < 0.2:
                    continue
                small = rng.random() < 0.35
                cells[(grid, sex, band)] = rng.randint(1, 9) if small else rng.randint(10, 60)
    return cells


def query(cells: Cells, level: Level, kept: tuple[str, ...]) -> Cells:
    """The same count at a coarser level and/or with fewer keys."""
    out: Cells = {}
    for (grid, sex, band), n in cells.items():
        values = {"sex": sex, "band": band}
        key = (grid[: CODE_LENGTH[level]], *(values[k] for k in kept))
        out[key] = out.get(key, 0) + n
    return out


def released(cells: Cells, level: Level, kept: tuple[str, ...]) -> tuple[Cells, set[Key], bool]:
    """What the analyst gets for one query: released cells, withheld keys, any warning."""
    table = query(cells, level, kept)
    c = combined([[*k, n] for k, n in sorted(table.items())], [level, *kept], geo=level)
    p = protect(c, MIN)
    width = 1 + len(kept)
    shown = {tuple(r[:width]): r[width] for r in p.table.rows if r[width] is not None}
    hidden = {tuple(r[:width]) for r in p.table.rows if r[width] is None}
    return shown, hidden, any(n.startswith("warning") for n in p.notes)


def shapes() -> list[tuple[Level, tuple[str, ...]]]:
    subsets = [s for n in range(len(KEYS) + 1) for s in combinations(KEYS, n)]
    return [(level, kept) for level in LEVELS for kept in subsets]


def coarser(fine: tuple[Level, tuple[str, ...]], other: tuple[Level, tuple[str, ...]]) -> bool:
    (lf, kf), (lc, kc) = fine, other
    return LEVELS.index(lc) <= LEVELS.index(lf) and set(kc) <= set(kf) and fine != other


def project(
    key: Key, fine: tuple[Level, tuple[str, ...]], to: tuple[Level, tuple[str, ...]]
) -> Key:
    (_, kf), (lc, kc) = fine, to
    values = dict(zip(kf, key[1:], strict=True))
    return (key[0][: CODE_LENGTH[lc]], *(values[k] for k in kc))


def attack(cells: Cells, exact: bool = False) -> tuple[int, int, int]:
    """Subtract released cells from every released coarser total, for every pair of queries.

    Returns (queries checked, queries skipped because protect warned, withheld cells seen).
    Fails if a withheld cell is alone under a released total (its value = total − released),
    if the withheld cells under a released total sum to less than the minimum cell size, or if
    a total that a coarser query withholds is the sum of cells this query releases. With
    ``exact``, also fails if any withheld cell is solvable from all those equations at once.
    """
    results = {shape: released(cells, *shape) for shape in shapes()}
    truth = {shape: query(cells, *shape) for shape in shapes()}
    checked = skipped = seen = 0
    for fine, (_, hidden, warned) in results.items():
        if warned:
            skipped += 1
            continue
        checked += 1
        seen += len(hidden)
        equations: list[tuple[list[Key], int]] = []
        for other, (shown_total, hidden_total, _) in results.items():
            if not coarser(fine, other):
                continue
            under: dict[Key, list[Key]] = {}
            for key in hidden:
                under.setdefault(project(key, fine, other), []).append(key)
            for total_key in hidden_total:
                assert total_key in under, ("withheld total revealed", fine, other, total_key)
            for total_key, members in under.items():
                if total_key not in shown_total:
                    continue  # the coarser total is withheld too
                assert len(members) >= 2, (fine, other, total_key, members)
                assert sum(truth[fine][k] for k in members) >= MIN, (fine, other, members)
                equations.append((members, shown_total[total_key]))
        if exact:
            assert solvable(sorted(hidden), equations) == [], fine
    return checked, skipped, seen


@pytest.mark.parametrize("seed", range(12))
def test_attacker_cannot_subtract_dense(seed: int) -> None:
    checked, skipped, seen = attack(random_city(seed, sparse=False), exact=seed < 4)
    assert skipped == 0 and checked == len(shapes()) and seen > 0


@pytest.mark.parametrize("seed", range(12))
def test_attacker_cannot_subtract_sparse(seed: int) -> None:
    checked, skipped, _ = attack(random_city(100 + seed, sparse=True))
    # a warning is allowed (and then the query is not claimed safe), but must stay rare
    assert checked >= 0.8 * len(shapes()), (checked, skipped)


def test_coarser_queries_are_protected_exactly_as_the_hub_would() -> None:
    """protect simulates every coarser query; the analyst's own coarser query must get the very
    same release (otherwise the simulation would protect against the wrong totals)."""
    cells = random_city(42, sparse=False)
    street = released(cells, "street", ("sex",))
    # the street query, as protect of the grid query sees it, is protect of the rolled-up table
    again = released(dict(sorted(cells.items(), reverse=True)), "street", ("sex",))
    assert street == again


def solvable(hidden: list[Key], equations: list[tuple[list[Key], int]]) -> list[Key]:
    """The withheld cells whose value follows from the equations by linear algebra (ignoring
    bounds): cell x is determined iff its unit vector lies in the equations' row space."""
    if not hidden or not equations:
        return []
    index = {k: i for i, k in enumerate(hidden)}
    a = np.zeros((len(equations), len(hidden)))
    for r, (members, _) in enumerate(equations):
        for k in members:
            a[r, index[k]] = 1.0
    # x_i is fixed by A x = b iff every vector of A's null space is 0 in coordinate i.
    _, sv, vt = np.linalg.svd(a)
    rank = int((sv > 1e-9).sum())
    null = vt[rank:]
    return [k for k, i in index.items() if null.shape[0] == 0 or np.abs(null[:, i]).max() < 1e-9]


@pytest.mark.parametrize("seed", range(8))
def test_no_withheld_cell_solvable_in_a_pure_hierarchy(seed: int) -> None:
    """With the area as the only key, the totals at every coarser level are nested (a laminar
    family), and the rule "none or at least two withheld under each released total" makes every
    withheld cell undeterminable even by combining all those equations at once."""
    cells = {(g, "-", "-"): n for (g, s, b), n in random_city(200 + seed, sparse=True).items()}
    merged: Cells = {}
    for (g, _, _), n in cells.items():
        merged[(g, "-", "-")] = merged.get((g, "-", "-"), 0) + n
    results = {level: released(merged, level, ()) for level in LEVELS}
    for i, level in enumerate(LEVELS):
        _, hidden, _ = results[level]
        equations: list[tuple[list[Key], int]] = []
        for upper in LEVELS[:i]:
            upper_shown = results[upper][0]
            under: dict[Key, list[Key]] = {}
            for key in hidden:
                under.setdefault((key[0][: CODE_LENGTH[upper]],), []).append(key)
            equations += [(m, upper_shown[t]) for t, m in under.items() if t in upper_shown]
        assert solvable(sorted(hidden), equations) == [], level
