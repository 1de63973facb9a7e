"""The asking node's query sets: which elements it matches, in which groups and units.

A *unit* is one set the client matches against the server's setup; the client learns one count
per unit (or, in reveal mode, which of the unit's items matched). Units follow the approved
plan only:

* ``per_group``: one unit per group (the client's own area at ``group_level``) with at least
  the answering node's minimum set size; smaller groups are not queried (their counts stay
  None and disclosure control withholds them);
* ``cardinality`` and ``reveal``: one unit of every element.

With ``outer_level`` (person–household separation) each unit comes twice — its elements at
``match_level`` and the SAME people's elements at ``outer_level`` — and the flag is "held at the
outer level, not at the match level". For that difference to count people, not records, each
person (key) is placed in ONE area: the one where most of their records are (ties: the
smallest code). Everything here stays inside the node: these are derived identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from datalab.geography import CODE_LENGTH
from node_agent.identity import (
    IdentityColumns,
    KeyCounts,
    areas,
    client_elements,
    server_elements,
)
from recipes.psi_contract import PsiPlan

Layer = Literal["match", "outer"]
#: (group, layer): "" is the one group of cardinality and reveal units
Unit = tuple[str, Layer]


@dataclass
class ClientSets:
    #: per group, its distinct elements at ``match_level``, sorted
    by_group: dict[str, list[str]]
    counts: KeyCounts
    #: with ``outer_level``: each element's counterpart at the outer level (same person)
    outer: dict[str, str] = field(default_factory=dict)


def server_set(table: pa.Table, plan: PsiPlan) -> tuple[list[str], KeyCounts]:
    """The answering node's elements: every key at ``match_level`` (and ``outer_level``)."""
    identity = IdentityColumns(**plan.identity.model_dump())
    items, counts = server_elements(table, identity, plan.area_column, plan.match_level)
    if plan.outer_level is not None:  # the same keys at the coarser level too
        outer, _ = server_elements(table, identity, plan.area_column, plan.outer_level)
        items = sorted({*items, *outer})
    return items, counts


def client_sets(table: pa.Table, plan: PsiPlan) -> ClientSets:
    """The client's elements per group, from its records (``min_records`` applied)."""
    identity = IdentityColumns(**plan.identity.model_dump())
    if plan.outer_level is not None:
        return _one_area_per_person(table, identity, plan)
    elements, counts = client_elements(
        table, identity, plan.area_column, plan.match_level, cascade=plan.cascade
    )
    groups = (
        areas(table, plan.area_column, plan.group_level)
        if plan.group_level
        else [""] * table.num_rows
    )
    records: dict[tuple[str, str], int] = {}
    for element, group in zip(elements, groups, strict=True):
        if element is not None and group is not None:
            records[(group, element)] = records.get((group, element), 0) + 1
    by_group: dict[str, list[str]] = {}
    for (group, element), n in sorted(records.items()):
        if n >= plan.min_records:
            by_group.setdefault(group, []).append(element)
    return ClientSets(by_group=by_group, counts=counts)


def _one_area_per_person(table: pa.Table, identity: IdentityColumns, plan: PsiPlan) -> ClientSets:
    assert plan.outer_level is not None
    # keys at the area column's own (finest) level, then one area per key
    elements, counts = client_elements(
        table, identity, plan.area_column, "grid", cascade=plan.cascade
    )
    seen: dict[str, dict[str, int]] = {}
    for element in elements:
        if element is not None:
            key, _, code = element.rpartition("@")
            per_area = seen.setdefault(key, {})
            per_area[code] = per_area.get(code, 0) + 1
    inner_len, outer_len = CODE_LENGTH[plan.match_level], CODE_LENGTH[plan.outer_level]
    group_len = CODE_LENGTH[plan.group_level] if plan.group_level else 0
    by_group: dict[str, list[str]] = {}
    outer: dict[str, str] = {}
    for key, per_area in seen.items():
        code, n = min(per_area.items(), key=lambda kv: (-kv[1], kv[0]))
        if n < plan.min_records:
            continue
        inner = f"{key}@{code[:inner_len]}"
        by_group.setdefault(code[:group_len], []).append(inner)
        outer[inner] = f"{key}@{code[:outer_len]}"
    return ClientSets(
        by_group={g: sorted(items) for g, items in sorted(by_group.items())},
        counts=counts,
        outer=outer,
    )


def query_units(sets: ClientSets, plan: PsiPlan, min_set: int) -> dict[Unit, list[str]]:
    """The units to match, in order; empty when no set reaches ``min_set``."""
    if plan.mode == "per_group":
        base = {g: items for g, items in sets.by_group.items() if len(items) >= min_set}
    else:
        everything = sorted({e for items in sets.by_group.values() for e in items})
        if plan.max_areas_per_key is not None:
            everything = bound_per_key(everything, plan.max_areas_per_key)
        base = {"": everything} if len(everything) >= min_set else {}
    units: dict[Unit, list[str]] = {}
    for group, items in base.items():
        units[(group, "match")] = items
        if plan.outer_level is not None:
            units[(group, "outer")] = [sets.outer[e] for e in items]
    return units


def group_counts(
    sets: ClientSets, plan: PsiPlan, units: dict[Unit, list[str]], matched: dict[Unit, int]
) -> dict[str, tuple[int | None, int | None]]:
    """(flag count, checked) per group from each unit's intersection size; (None, None) for
    a group not queried."""
    out: dict[str, tuple[int | None, int | None]] = dict.fromkeys(sets.by_group, (None, None))
    for group, layer in units:
        if layer != "match":
            continue
        n, m = len(units[(group, "match")]), matched[(group, "match")]
        if plan.outer_level is not None:
            flag = max(0, matched[(group, "outer")] - m)
        elif plan.flag == "matched":
            flag = m
        else:
            flag = n - m
        out[group] = (flag, n)
    return out


def flagged_elements(
    plan: PsiPlan, units: dict[Unit, list[str]], found: dict[Unit, set[int]]
) -> set[str]:
    """Reveal mode: the client's elements the flag is about (positions → elements)."""
    items = units[("", "match")]
    hit = found[("", "match")]
    if plan.outer_level is not None:
        outer_hit = found[("", "outer")]
        return {e for i, e in enumerate(items) if i in outer_hit and i not in hit}
    wanted = plan.flag == "matched"
    return {e for i, e in enumerate(items) if (i in hit) == wanted}


def bound_per_key(elements: list[str], most: int) -> list[str]:
    """At most ``most`` elements ``<key>@<area>`` per key (the first areas in sorted order):
    contribution bounding for a differentially private count, done where the keys are."""
    kept: list[str] = []
    seen: dict[str, int] = {}
    for element in sorted(elements):
        key = element.rsplit("@", 1)[0]
        if seen.get(key, 0) < most:
            seen[key] = seen.get(key, 0) + 1
            kept.append(element)
    return kept
