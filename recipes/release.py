"""Every disclosure rule applied to one combined table, in order, before the hub releases it.

1. **query-set size** — a result over fewer rows than ``min_query_set`` is refused outright;
2. **complement size** — a filtered result leaving between 1 and ``min_complement - 1`` rows of
   the datasets outside it is refused (the catalogue's row counts are public, so
   ``rows − answer`` would count those few people);
3. **dominance** for sums — a cell whose ``dominance_n`` largest contributions exceed
   ``dominance_k`` % of its sum, or whose sum minus its two largest contributions is below
   ``p_percent`` % of the largest, is withheld like a small cell;
4. **cell suppression** — primary below ``min_cell`` (on exact counts) and complementary up
   the hierarchy and across dropped keys (``disclosure.protect``);
5. **rounding** — released counts are rounded to a multiple of ``rounding_base``, last, so a
   rounded 10 never hides a true 8.

Pure functions of the table and the rules: no HTTP, no database.
"""

from __future__ import annotations

from dataclasses import dataclass

from datalab.errors import JobRefused
from datalab.wire import Table
from recipes.contract import Combined
from recipes.disclosure import Protected, protect
from recipes.rules import Rules


@dataclass(frozen=True)
class QuerySet:
    """How many rows the query touched (None when a node did not say: then the table's total
    count is used), and how many rows its datasets hold (public, in the catalogue)."""

    size: int | None
    population: int


def apply_rules(combined: Combined, rules: Rules, query_set: QuerySet | None = None) -> Protected:
    """The table as it may be released under ``rules``; JobRefused when it may not be at all."""
    if query_set is not None:
        if query_set.size is None:
            at = combined.table.columns.index(combined.count_column)
            total = sum(int(r[at] or 0) for r in combined.table.rows)
            query_set = QuerySet(size=total, population=query_set.population)
        check_query_set(query_set, rules)
    flagged = dominated(combined, rules)
    protected = protect(combined, rules.min_cell, bool(rules["complementary"]), flagged)
    notes = list(protected.notes)
    n_dominated = sum(flagged)
    if n_dominated:
        notes.insert(0, f"dominance: {n_dominated} sum {_cells(n_dominated)} withheld")
    table = protected.table
    base = int(rules["rounding_base"])
    if base > 1:
        table = round_counts(table, combined.count_column, base)
        notes.append(f"rounding: released counts rounded to a multiple of {base}")
    return Protected(table=table, suppressed_cells=protected.suppressed_cells, notes=notes)


def check_query_set(query_set: QuerySet, rules: Rules) -> None:
    """Refuse a query set (or its complement) too small to release anything about.

    The messages give the rule, never the sizes: a size below the threshold is exactly what
    must not be disclosed.
    """
    minimum = int(rules["min_query_set"])
    size = query_set.size or 0
    if size < minimum:
        raise JobRefused(f"query set too small: fewer than {minimum} rows match the filters")
    complement = query_set.population - size
    least = int(rules["min_complement"])
    if 0 < complement < least:
        raise JobRefused(
            f"query set complement too small: the filters leave out fewer than {least} rows of "
            "the datasets, so the datasets' row counts minus this answer would count them"
        )


def dominated(combined: Combined, rules: Rules) -> list[bool]:
    """Which rows' sums break the (n,k) rule or the p% rule (all False without sums).

    With ``T`` the cell's sum and ``x1 ≥ x2`` its two largest contributions:
    (n,k): ``x1 (+ x2 when n = 2) > k% of T``; p%: ``T − x1 − x2 < p% of x1`` (the runner-up,
    who knows ``x2``, would learn ``x1`` to within p%). A cell with one contributor breaks both.
    """
    tops = combined.contributions
    if tops is None:
        return [False] * len(combined.table.rows)
    n = int(rules["dominance_n"])
    k = float(rules["dominance_k"]) / 100.0
    p = float(rules["p_percent"]) / 100.0
    flags: list[bool] = []
    for total, first, second in tops:
        x1, x2 = sorted((abs(first), abs(second)), reverse=True)
        t = abs(total)
        broken = False
        if n > 0 and x1 > 0:
            largest = x1 if n == 1 else x1 + x2
            broken = largest > k * t
        if p > 0 and x1 > 0:
            broken = broken or (t - x1 - x2) < p * x1
        flags.append(broken)
    return flags


def round_counts(table: Table, count_column: str, base: int) -> Table:
    """Round the released (non-None) counts to the nearest multiple of ``base`` (halves up)."""
    at = table.columns.index(count_column)
    rows = []
    for row in table.rows:
        row = list(row)
        if isinstance(row[at], int) and not isinstance(row[at], bool):
            row[at] = base * ((row[at] + base // 2) // base)
        rows.append(row)
    return Table(columns=list(table.columns), rows=rows)


def _cells(n: int) -> str:
    return "cell" if n == 1 else "cells"
