"""Cell suppression for a combined result: what the hub applies before anything is released.

Two rules, applied to the rows of a :class:`~recipes.contract.Combined` table:

* **primary** — a row whose count is below ``min_cell`` is withheld (its count and every other
  measure become None; its keys stay, since the groups are public knowledge from the catalogue).
* **complementary** — a withheld count must not be recoverable by subtraction from a total the
  analyst can also obtain. The analyst can re-run the same query with the area key rolled up to
  any coarser level (up to the city) and with any subset of the other keys dropped; each such
  query partitions this table's rows into groups whose sums it may release. In every group the
  withheld rows must be none, or at least two whose true counts sum to ``min_cell`` or more —
  unless the whole group is withheld and its total is itself below ``min_cell`` (then that total
  is primary-suppressed by the coarser query too). A group breaking the rule gets its smallest
  released row withheld as well, and the rule is re-checked everywhere until nothing changes.

The procedure is a deterministic function of the table's content: groups are visited in a fixed
order and ties between candidate rows are broken by (count, key values), never by row order, so
the same data gives the same release however the nodes' partials arrived.

What this does NOT guarantee (see docs/recipes.md): protection against linear programs that
combine many *different* queries, or several equations of this same table at once (a suppressed
cell that lies on no "cycle" of suppressed cells can in principle be solved for). Rows that are
the only member of a coarser total cannot be protected by suppression in this table at all; when
such a row had to be used, the notes say so with a ``warning:``.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from datalab.geography import CODE_LENGTH, LEVELS, Level, level_of
from datalab.wire import Table
from recipes.contract import Combined


@dataclass(frozen=True)
class Protected:
    """A table ready for release and an account of what was withheld."""

    #: same columns as the combined table; suppressed rows' count and every other measure None.
    table: Table
    #: number of rows withheld (primary + complementary).
    suppressed_cells: int
    #: readable account, e.g. "primary: 3 cells below 10".
    notes: list[str]


@dataclass
class _Grouping:
    """One coarser query the analyst could run: how it partitions this table's rows."""

    label: str
    groups: list[list[int]]


def protect(combined: Combined, min_cell: int, complementary: bool = True) -> Protected:
    """Withhold every cell below ``min_cell`` and enough others that none can be recovered by
    subtraction from the totals of coarser versions of the same query."""
    table = combined.table
    columns = table.columns
    count_at = columns.index(combined.count_column)
    rows = table.rows
    counts = [_as_count(row[count_at]) for row in rows]
    suppressed = [c < min_cell for c in counts]
    primary = sum(suppressed)
    notes: list[str] = []
    if primary:
        notes.append(f"primary: {primary} {_cells(primary)} below {min_cell}")

    if complementary and primary:
        notes.extend(_complementary(combined, counts, suppressed, min_cell))

    measure_at = [i for i, c in enumerate(columns) if c not in set(combined.key_columns)]
    out_rows: list[list[Any]] = []
    for row, withheld in zip(rows, suppressed, strict=True):
        if withheld:
            row = list(row)
            for i in measure_at:
                row[i] = None
        else:
            row = list(row)
        out_rows.append(row)
    return Protected(
        table=Table(columns=list(columns), rows=out_rows),
        suppressed_cells=sum(suppressed),
        notes=notes,
    )


# ------------------------------------------------------------------ complementary suppression


def _complementary(
    combined: Combined, counts: list[int], suppressed: list[bool], min_cell: int
) -> list[str]:
    """Extend ``suppressed`` in place until every group of every coarser query obeys the rule;
    return the notes describing what was added."""
    rows = combined.table.rows
    columns = combined.table.columns
    row_keys = [
        tuple(_sort_key(row[columns.index(k)]) for k in combined.key_columns) for row in rows
    ]
    groupings = _groupings(combined)
    if not groupings:
        return []

    # Flatten every group into one deterministic order; remember each row's groups.
    members_of: list[list[int]] = []
    label_of: list[str] = []
    groups_of_row: list[list[int]] = [[] for _ in rows]
    for grouping in groupings:
        for members in grouping.groups:
            gid = len(members_of)
            members_of.append(members)
            label_of.append(grouping.label)
            for i in members:
                groups_of_row[i].append(gid)

    # A row that is alone in some coarser group is "pinned": that query releases its value, so
    # withholding it here hides nothing. It is a complement of last resort.
    pinned = [any(len(members_of[g]) == 1 for g in groups_of_row[i]) for i in range(len(rows))]
    # Candidates in each group, best complement first.
    order = [
        sorted(members, key=lambda i: (pinned[i], counts[i], row_keys[i])) for members in members_of
    ]
    cursor = [0] * len(members_of)
    total = [sum(counts[i] for i in members) for members in members_of]
    n_sup = [sum(1 for i in members if suppressed[i]) for members in members_of]
    sum_sup = [sum(counts[i] for i in members if suppressed[i]) for members in members_of]

    def ok(g: int) -> bool:
        if n_sup[g] == 0:
            return True
        if n_sup[g] == len(members_of[g]) and total[g] < min_cell:
            return True
        return n_sup[g] >= 2 and sum_sup[g] >= min_cell

    heap = [g for g in range(len(members_of)) if n_sup[g]]
    heapq.heapify(heap)
    queued = set(heap)
    added_by_label: dict[str, int] = {}
    forced = 0
    exposed: set[int] = set()
    while heap:
        g = heapq.heappop(heap)
        queued.discard(g)
        while not ok(g):
            candidates = order[g]
            while cursor[g] < len(candidates) and suppressed[candidates[cursor[g]]]:
                cursor[g] += 1
            if cursor[g] == len(candidates):
                # Every row of the group is withheld, yet its total is released elsewhere:
                # only possible for a pinned row withheld to protect another group.
                exposed.update(members_of[g])
                break
            pick = candidates[cursor[g]]
            suppressed[pick] = True
            added_by_label[label_of[g]] = added_by_label.get(label_of[g], 0) + 1
            forced += pinned[pick]
            for h in groups_of_row[pick]:
                n_sup[h] += 1
                sum_sup[h] += counts[pick]
                if h != g and h not in queued:
                    heapq.heappush(heap, h)
                    queued.add(h)

    notes: list[str] = []
    added = sum(added_by_label.values())
    if added:
        labels = [g.label for g in groupings if g.label in added_by_label]
        notes.append(
            f"complementary: {added} {_cells(added)} so no suppressed cell can be recovered "
            f"from its {_join(labels)}"
        )
    if forced or exposed:
        notes.append(
            f"warning: {max(forced, len(exposed))} suppressed {_cells(max(forced, len(exposed)))} "
            "are the only cell of a coarser total, which another query can release; the table is "
            "too sparse for suppression alone to protect every cell across queries"
        )
    return notes


def _groupings(combined: Combined) -> list[_Grouping]:
    """Every coarser query of the same shape: the area key rolled up to each coarser level (or
    kept), crossed with each subset of the other keys kept — the identity excluded."""
    rows = combined.table.rows
    columns = combined.table.columns
    geo = combined.geo_column if combined.geo_column in combined.key_columns else None
    geo_at = columns.index(geo) if geo is not None else None
    others: list[str] = []
    for key in combined.key_columns:
        if key == geo:
            continue
        at = columns.index(key)
        # A key with one value in the whole table adds no information: dropping it gives the
        # very same numbers, protected the very same way.
        if len({_sort_key(row[at]) for row in rows}) > 1:
            others.append(key)
    other_at = {k: columns.index(k) for k in others}

    levels: list[Level | None] = [None]
    if geo_at is not None:
        finest = combined.geo_level or _infer_level(rows, geo_at)
        if finest is not None:
            levels += list(reversed(LEVELS[: LEVELS.index(finest)]))

    result: list[_Grouping] = []
    for level in levels:
        for keep_n in range(len(others), -1, -1):
            for kept in combinations(others, keep_n):
                if level is None and keep_n == len(others):
                    continue  # the query itself
                dropped = [k for k in others if k not in kept]
                groups: dict[tuple[Any, ...], list[int]] = {}
                for i, row in enumerate(rows):
                    key: tuple[Any, ...] = tuple(_sort_key(row[other_at[k]]) for k in kept)
                    if geo_at is not None:
                        code = row[geo_at]
                        area = _roll(code, level) if level is not None else code
                        key = (_sort_key(area), *key)
                    groups.setdefault(key, []).append(i)
                ordered = [groups[k] for k in sorted(groups)]
                result.append(_Grouping(label=_label(level, dropped), groups=ordered))
    return result


def _label(level: Level | None, dropped: Sequence[str]) -> str:
    without = " and ".join(repr(k) for k in dropped)
    if level is not None and dropped:
        return f"{level} total without {without}"
    if level is not None:
        return f"{level} total"
    return f"total without {without}"


def _roll(code: Any, level: Level) -> Any:
    if isinstance(code, str) and len(code) >= CODE_LENGTH[level]:
        return code[: CODE_LENGTH[level]]
    return code


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


def _sort_key(value: Any) -> tuple[int, Any]:
    """A total order over mixed key values (None, bools, numbers, strings) for tie-breaking."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, repr(value))


def _cells(n: int) -> str:
    return "cell" if n == 1 else "cells"


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]
