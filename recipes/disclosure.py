"""Cell suppression for a combined result: what the hub applies before anything is released.

Two rules, applied to the rows of a :class:`~recipes.contract.Combined` table:

* **primary** — a row whose count is below ``min_cell`` is withheld (its count and every other
  measure become None; its keys stay: which groups exist is what the analyst asked about).
* **complementary** — a withheld count must not be recoverable by subtraction from a total the
  analyst can also obtain. The analyst can re-run the same query with the area key rolled up to
  any coarser level (up to the city) and with any subset of the other keys dropped. Each such
  coarser query partitions this table's rows into groups, and releases some group totals. For
  every released total, the withheld rows under it must be none, or at least two whose true
  counts sum to ``min_cell`` or more; a group breaking the rule gets its smallest released row
  withheld too, and the rule is re-checked everywhere until nothing changes.

Which coarser totals are released is not guessed: a coarser query's result is a deterministic
function of the same data rolled up, so ``protect`` computes it — protecting every coarser query
first, coarsest first, exactly as the hub will when the analyst asks for it. A total that the
coarser query itself withholds gives the analyst no equation, so it constrains nothing here (it
is protected, in turn, by the totals above it). This keeps results consistent across levels and
avoids withholding more than needed.

The procedure is deterministic: queries and groups are visited in a fixed order and ties between
candidate rows are broken by (count, key values), never by row order, so the same data gives the
same release however the nodes' partials arrived.

What this does NOT guarantee (see docs/recipes.md): protection against linear programs that
combine many *different* queries (other filters, other group keys), or several equations of
this same table at once. A row that is the only member of a released coarser total (a sparse
table) cannot be hidden by suppression at all; when such a row had to serve as a complement,
the notes say so with a ``warning:``.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from datalab.geography import CODE_LENGTH, LEVELS, Level, level_of
from datalab.wire import Table
from recipes.contract import Combined, sort_key

Key = tuple[Any, ...]


@dataclass(frozen=True)
class Protected:
    """A table ready for release and an account of what was withheld."""

    #: same columns as the combined table; suppressed rows' count and every other measure None.
    table: Table
    #: number of rows withheld (primary + complementary).
    suppressed_cells: int
    #: readable account, e.g. "primary: 3 cells below 10".
    notes: list[str]


def protect(
    combined: Combined,
    min_cell: int,
    complementary: bool = True,
    sensitive: Sequence[bool] | None = None,
) -> Protected:
    """Withhold every cell below ``min_cell`` (and every cell flagged ``sensitive``, e.g. by a
    dominance rule) and enough others that none can be recovered by subtraction from the
    released totals of coarser versions of the same query."""
    table = combined.table
    columns = table.columns
    count_at = columns.index(combined.count_column)
    counts = [_as_count(row[count_at]) for row in table.rows]
    flagged = list(sensitive) if sensitive is not None else [False] * len(counts)
    suppressed = [c < min_cell or f for c, f in zip(counts, flagged, strict=True)]
    primary = sum(suppressed)
    notes: list[str] = []
    small = sum(c < min_cell for c in counts)
    if small:
        notes.append(f"primary: {small} {_cells(small)} below {min_cell}")
    if complementary and primary:
        lattice = _Lattice(combined, counts, flagged)
        suppressed, extra_notes = lattice.protect_all(min_cell)
        notes.extend(extra_notes)

    keys = set(combined.key_columns)
    measure_at = [i for i, c in enumerate(columns) if c not in keys]
    out_rows: list[list[Any]] = []
    for row, withheld in zip(table.rows, suppressed, strict=True):
        row = list(row)
        if withheld:
            for i in measure_at:
                row[i] = None
        out_rows.append(row)
    return Protected(
        table=Table(columns=list(columns), rows=out_rows),
        suppressed_cells=sum(suppressed),
        notes=notes,
    )


# ------------------------------------------------------------------ the lattice of queries

#: A query shape: the area level (None when the table has no area key) and the other keys kept.
Shape = tuple[Level | None, tuple[str, ...]]


@dataclass
class _Query:
    """One query of the lattice, rolled up from the table: its cells and their counts."""

    shape: Shape
    keys: list[Key]
    counts: list[int]
    #: for each cell, one row of the original table inside it (to project it to coarser shapes)
    sample: list[int]
    released: set[Key] = field(default_factory=set)


class _Lattice:
    """The query itself and every coarser query of the same shape the analyst could run."""

    def __init__(self, combined: Combined, counts: list[int], flagged: list[bool]) -> None:
        self.flagged = flagged
        rows = combined.table.rows
        columns = combined.table.columns
        geo = combined.geo_column if combined.geo_column in combined.key_columns else None
        self.geo_at = columns.index(geo) if geo is not None else None
        others: list[str] = []
        for key in combined.key_columns:
            if key == geo:
                continue
            at = columns.index(key)
            # A key with one value in the whole table adds no information: dropping it gives
            # the very same numbers, protected the very same way.
            if len({sort_key(row[at]) for row in rows}) > 1:
                others.append(key)
        self.others = others
        self.other_at = {k: columns.index(k) for k in others}
        self.rows = rows
        self.counts = counts

        own: Level | None = None
        levels: list[Level | None] = [None]
        if self.geo_at is not None:
            own = combined.geo_level or _infer_level(rows, self.geo_at)
            if own is not None:
                levels = list(LEVELS[: LEVELS.index(own) + 1])
        self.own: Shape = (own, tuple(others))
        subsets = [s for n in range(len(others) + 1) for s in combinations(others, n)]
        # coarsest first: every query's coarser queries come before it
        self.shapes: list[Shape] = [(lv, kept) for lv in levels for kept in subsets]
        self.shapes.sort(key=lambda s: (_level_index(s[0]), len(s[1])))

    def key(self, row: int, shape: Shape) -> Key:
        level, kept = shape
        values = self.rows[row]
        key = tuple(sort_key(values[self.other_at[k]]) for k in kept)
        if self.geo_at is not None:
            code = values[self.geo_at]
            if level is not None and isinstance(code, str) and len(code) >= CODE_LENGTH[level]:
                code = code[: CODE_LENGTH[level]]
            key = (sort_key(code), *key)
        return key

    def query(self, shape: Shape) -> _Query:
        if shape == self.own:
            keys = [self.key(i, shape) for i in range(len(self.rows))]
            return _Query(shape, keys, list(self.counts), list(range(len(self.rows))))
        cells: dict[Key, list[int]] = {}
        for i, n in enumerate(self.counts):
            cell = cells.setdefault(self.key(i, shape), [0, i])
            cell[0] += n
        ordered = sorted(cells)
        return _Query(
            shape, ordered, [cells[k][0] for k in ordered], [cells[k][1] for k in ordered]
        )

    def protect_all(self, min_cell: int) -> tuple[list[bool], list[str]]:
        """Protect every coarser query, coarsest first, then the query itself; return the
        query's withheld rows and the notes about its complementary suppression."""
        done: list[_Query] = []
        for shape in self.shapes:
            q = self.query(shape)
            coarser = [c for c in done if _is_coarser(c.shape, shape)]
            suppressed, notes = _suppress(self, q, coarser, min_cell)
            if shape == self.own:
                return suppressed, notes
            q.released = {k for k, s in zip(q.keys, suppressed, strict=True) if not s}
            done.append(q)
        raise AssertionError("the query itself is always in its lattice")  # pragma: no cover


def _suppress(
    lattice: _Lattice, q: _Query, coarser: list[_Query], min_cell: int
) -> tuple[list[bool], list[str]]:
    """Primary suppression of ``q`` plus complementary suppression against the released
    totals of ``coarser`` queries (already protected)."""
    counts = q.counts
    n = len(counts)
    suppressed = [c < min_cell for c in counts]
    if q.shape == lattice.own:
        suppressed = [s or f for s, f in zip(suppressed, lattice.flagged, strict=True)]
    if not any(suppressed):
        return suppressed, []

    # Every coarser total is a group of q's cells. A released total is an equation the analyst
    # holds; a withheld one must stay unknown, so q must not release all of its cells.
    members_of: list[list[int]] = []
    label_of: list[str] = []
    hidden_total: list[bool] = []
    groups_of: list[list[int]] = [[] for _ in range(n)]
    # finest totals first: a local fix there usually satisfies the coarser totals too
    for c in reversed(coarser):
        label = _label(lattice, c.shape)
        groups: dict[Key, list[int]] = {}
        for i in range(n):
            groups.setdefault(lattice.key(q.sample[i], c.shape), []).append(i)
        for total_key in sorted(groups):
            gid = len(members_of)
            members_of.append(groups[total_key])
            label_of.append(label)
            hidden_total.append(total_key not in c.released)
            for i in groups[total_key]:
                groups_of[i].append(gid)

    # A cell alone under a released total is "pinned": that query releases its value, so
    # withholding it here hides nothing. It is a complement of last resort.
    pinned = [
        any(len(members_of[g]) == 1 and not hidden_total[g] for g in groups_of[i]) for i in range(n)
    ]
    order = [sorted(m, key=lambda i: (pinned[i], counts[i], q.keys[i])) for m in members_of]
    cursor = [0] * len(members_of)
    n_sup = [sum(1 for i in m if suppressed[i]) for m in members_of]
    sum_sup = [sum(counts[i] for i in m if suppressed[i]) for m in members_of]

    def ok(g: int) -> bool:
        if hidden_total[g]:
            return n_sup[g] >= 1
        return n_sup[g] == 0 or (n_sup[g] >= 2 and sum_sup[g] >= min_cell)

    heap = [g for g in range(len(members_of)) if not ok(g)]
    heapq.heapify(heap)
    queued = set(heap)
    added_by_label: dict[str, int] = {}
    forced: set[int] = set()
    while heap:
        g = heapq.heappop(heap)
        queued.discard(g)
        while not ok(g):
            candidates = order[g]
            while cursor[g] < len(candidates) and suppressed[candidates[cursor[g]]]:
                cursor[g] += 1
            if cursor[g] == len(candidates):
                # all withheld, yet the total is released: only a pinned cell withheld for
                # another group's sake can get here; it was counted as forced already.
                break
            pick = candidates[cursor[g]]
            suppressed[pick] = True
            added_by_label[label_of[g]] = added_by_label.get(label_of[g], 0) + 1
            if pinned[pick]:
                forced.add(pick)
            for h in groups_of[pick]:
                n_sup[h] += 1
                sum_sup[h] += counts[pick]
                if h != g and h not in queued:
                    heapq.heappush(heap, h)
                    queued.add(h)

    notes: list[str] = []
    added = sum(added_by_label.values())
    if added:
        labels = list(dict.fromkeys(lb for lb in label_of if lb in added_by_label))
        notes.append(
            f"complementary: {added} {_cells(added)} so no suppressed cell can be recovered "
            f"from its {_join(labels)}"
        )
    if forced:
        notes.append(
            f"warning: {len(forced)} withheld {_cells(len(forced))} "
            f"{'is' if len(forced) == 1 else 'are'} the only cell of a total another query "
            "releases; the table is too sparse for suppression alone to protect every cell"
        )
    return suppressed, notes


def _is_coarser(a: Shape, b: Shape) -> bool:
    """True when query ``a`` is a strictly coarser version of query ``b``."""
    return a != b and _level_index(a[0]) <= _level_index(b[0]) and set(a[1]) <= set(b[1])


def _level_index(level: Level | None) -> int:
    return LEVELS.index(level) if level is not None else 0


def _label(lattice: _Lattice, shape: Shape) -> str:
    level, kept = shape
    own_level, _ = lattice.own
    dropped = [k for k in lattice.others if k not in kept]
    without = " and ".join(repr(k) for k in dropped)
    rolled = level is not None and level != own_level
    if rolled and dropped:
        return f"{level} total without {without}"
    if rolled:
        return f"{level} total"
    return f"total without {without}"


def _infer_level(rows: Sequence[Sequence[Any]], at: int) -> Level | None:
    for row in rows:
        if isinstance(row[at], str):
            try:
                return level_of(row[at])
            except ValueError:
                return None
    return None


def _as_count(value: Any) -> int:
    """A count cell as an int; a missing count is treated as 0 (always withheld)."""
    if value is None or isinstance(value, bool):
        return 0
    return int(value)


def _cells(n: int) -> str:
    return "cell" if n == 1 else "cells"


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]
