"""The contract of a matching recipe: two agencies' records matched by private set intersection.

A ``PsiRecipe`` is a ``Recipe`` whose job has exactly two tasks — the *client* (the agency that
asks, e.g. housing: "which of my tenants are not registered where they rent?") and the *server*
(the agency that answers, e.g. public security's registrations). Instead of an
``AggregatePlan`` each node gets a declarative ``PsiPlan``: which columns hold the identity,
which area column, at which level records are matched and grouped, which rows take part. The
node derives the match keys itself (``node_agent/identity.py``), runs its role of the protocol
with openmined-psi through the hub's relay, and — for the client — answers with counts per
group. Like every recipe it knows nothing of HTTP, SQL or where it runs.

Modes (``DESIGN.md``, PSI): ``cardinality`` (one count), ``per_group`` (the client partitions
its records by one of its own columns — its area rolled up to a level — and learns a count per
group, never who) and ``reveal`` (owner-only: the client learns which of its own records matched
and keeps that list in its own domain as a verification list; both agencies must approve it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from datalab.errors import InvalidParameters, JobFailed
from datalab.geography import Level
from datalab.wire import CatalogueDataset, Table
from recipes.contract import (
    AggregatePlan,
    Combined,
    Filter,
    ParamSpec,
    Recipe,
    Strict,
    Target,
    sort_key,
)

PsiRole = Literal["client", "server"]
PsiMode = Literal["cardinality", "per_group", "reveal"]

#: the approval bound an agency admin sets to allow owner-only reveal (on both nodes):
#: ``--bounds '{"mode": {"choices": ["cardinality", "per_group", "reveal"]}}'`` names it.
REVEAL = "reveal"


class Identity(Strict):
    """The columns holding a record's identity; ``name``/``birth``/``sex`` enable the cascade."""

    id: str
    name: str | None = None
    birth: str | None = None
    sex: str | None = None


class ActivePeriod(Strict):
    """Rows current on ``on``: ``start <= on`` and (``end`` is null or ``end >= on``)."""

    start: str
    end: str
    on: str


class PsiPlan(Strict):
    role: PsiRole
    dataset: str
    identity: Identity
    #: the area-code column whose value says where a record is
    area_column: str
    #: records match when key and area rolled up to this level agree
    match_level: Level
    #: the client's grouping (per_group / reveal counts); None for one count
    group_level: Level | None = None
    mode: PsiMode = "per_group"
    cascade: bool = True
    filters: list[Filter] = Field(default_factory=list)
    active: ActivePeriod | None = None
    #: a client key counts only when this many of its records carry it (e.g. nights seen)
    min_records: int = 1
    #: which of the client's records the flag is about: those the server does not hold
    #: ("unmatched", e.g. not registered there) or those it holds ("matched", e.g. deceased)
    flag: Literal["unmatched", "matched"] = "unmatched"
    #: a second, coarser match level (e.g. ``city``): each client person is queried at both
    #: levels in one job, and the flag counts those the server holds at ``outer_level`` but not
    #: at ``match_level`` (registered in the city, not where they live). The client keys each
    #: person to ONE area (where most of its records are), so the two counts are of the same
    #: people and their difference never double-counts; the server inserts both levels.
    outer_level: Level | None = None
    #: reveal mode: keep the flagged records as an owner-only verification list (False when
    #: reveal is only the means, e.g. several answering agencies, and the output is counts)
    verification_list: bool = True
    #: differential privacy (cardinality mode): at most this many elements per key (one per
    #: area at ``match_level``), so one person moves each count by at most this much
    max_areas_per_key: int | None = None


class PsiRecipe(Recipe):
    """Base of the matching recipes: ``psi_plan`` instead of ``plan``; counts from the client."""

    #: the partial's measure columns, in order: the flag count (the count column for
    #: disclosure control) and ``checked`` (the client's people matched at all)
    output_measures: ClassVar[list[str]] = ["missed", "checked"]
    query_audited: ClassVar[bool] = False

    def psi_plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> PsiPlan:
        """The node-side plan for one of the two datasets (its role follows from its kind)."""
        raise NotImplementedError

    def plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> AggregatePlan:
        raise InvalidParameters(f"{self.key} is a matching recipe: nodes run its psi_plan")

    def combine(self, params: Mapping[str, Any], partials: Sequence[Table]) -> Combined:
        """Sum per group; a group the client could not query (below the answering node's
        minimum set size) stays None, so disclosure control withholds it."""
        level = group_column(params)
        keys = [level] if level else []
        totals: dict[tuple[Any, ...], list[int | None]] = {}
        for table in partials:
            missing = [c for c in [*keys, *self.output_measures] if c not in table.columns]
            if missing:
                raise JobFailed(f"a partial result lacks the column {missing[0]!r}")
            at = [table.columns.index(c) for c in [*keys, *self.output_measures]]
            for row in table.rows:
                values = [row[i] for i in at]
                key = tuple(values[: len(keys)])
                acc = totals.setdefault(key, [0] * len(self.output_measures))
                for j, v in enumerate(values[len(keys) :]):
                    acc[j] = None if v is None or acc[j] is None else int(acc[j] or 0) + int(v)
        rows = [
            [*k, *v] for k, v in sorted(totals.items(), key=lambda kv: [sort_key(x) for x in kv[0]])
        ]
        return Combined(
            table=Table(columns=[*keys, *self.output_measures], rows=rows),
            key_columns=keys,
            count_column=self.output_measures[0],
            geo_column=level,
            geo_level=level,
        )


def group_column(params: Mapping[str, Any]) -> Level | None:
    """The output's area column: the level, except in cardinality mode (one city-wide count)."""
    return None if params.get("mode") == "cardinality" else params.get("level")


def one_dataset_each(
    kinds: Sequence[str], catalogue: Sequence[tuple[str, CatalogueDataset]]
) -> list[Target]:
    """One target per kind, in the order given: a match names its parties, so a catalogue with
    none or several datasets of a kind is refused rather than guessed."""
    out = []
    for wanted in kinds:
        found = [Target(agency=a, dataset=d.name) for a, d in catalogue if d.kind == wanted]
        if len(found) != 1:
            raise InvalidParameters(
                f"matching needs exactly one dataset of kind {wanted!r} in the catalogue; "
                f"found {len(found)}"
            )
        out.append(found[0])
    return out


# The parameters every matching recipe shares, declared once so their meaning (and the modes
# an agency approves) cannot drift apart between recipes.
AREA_LEVELS = ["district", "street", "community", "grid"]
REVEAL_TOO = "one count, a count per area, or owner-only reveal (both approve)"


def mode_param(description: str = REVEAL_TOO) -> ParamSpec:
    return ParamSpec(
        name="mode",
        type="str",
        default="per_group",
        choices=["cardinality", "per_group", "reveal"],
        description=description,
    )


def level_param(description: str = "the area level the counts are given per") -> ParamSpec:
    return ParamSpec(
        name="level",
        type="level",
        default="community",
        choices=AREA_LEVELS,
        description=description,
    )


def cascade_param() -> ParamSpec:
    return ParamSpec(
        name="cascade",
        type="bool",
        default=True,
        description="match on name + birth date + sex where the ID is missing/invalid",
    )
