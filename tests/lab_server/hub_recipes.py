"""Tiny recipes for the hub's tests: the hub only needs validate, targets and combine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from datalab.errors import InvalidParameters
from datalab.wire import CatalogueDataset, Table
from recipes.contract import (
    AggregatePlan,
    Combined,
    DatasetRole,
    DisclosurePolicy,
    GroupKey,
    Measure,
    OutputColumn,
    ParamSpec,
    Recipe,
    RecipeManifest,
    Target,
)
from recipes.registry import RecipeRegistry

PEOPLE = "people"


class CountByArea(Recipe):
    """Count people per area code across every node holding a ``people`` dataset."""

    manifest = RecipeManifest(
        name="count_by_area",
        version="1.0",
        title="People per area",
        purpose="hub tests",
        datasets=[DatasetRole(role="people", kind=PEOPLE, required_columns=["area"])],
        params=[
            ParamSpec(name="min_age", type="int", description="youngest", minimum=0, maximum=120),
            ParamSpec(name="column", type="str", description="group column", default="area"),
        ],
        output=[OutputColumn(name="area", type="str"), OutputColumn(name="n", type="int")],
        disclosure=DisclosurePolicy(min_cell=5),
    )

    def validate(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]] = ()
    ) -> dict[str, Any]:
        out = super().validate(params, catalogue)
        columns = {c.name for _, ds in catalogue for c in ds.columns}
        if catalogue and out["column"] not in columns:
            raise InvalidParameters(
                f"parameter 'column': no dataset has a column {out['column']!r}"
            )
        return out

    def targets(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]]
    ) -> list[Target]:
        return [Target(agency=a, dataset=ds.name) for a, ds in catalogue if ds.kind == PEOPLE]

    def plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> AggregatePlan:
        return AggregatePlan(
            dataset=dataset.name,
            group_by=[GroupKey(column=params["column"])],
            measures=[Measure(fn="count", alias="n")],
        )

    def combine(self, params: Mapping[str, Any], partials: Sequence[Table]) -> Combined:
        totals: dict[str, int] = {}
        for table in partials:
            for area, n in table.rows:
                totals[area] = totals.get(area, 0) + int(n)
        return Combined(
            table=Table(columns=["area", "n"], rows=[[a, totals[a]] for a in sorted(totals)]),
            key_columns=["area"],
            count_column="n",
        )


class CountAllowingMissing(CountByArea):
    manifest = CountByArea.manifest.model_copy(
        update={
            "name": "count_allowing_missing",
            "disclosure": DisclosurePolicy(min_cell=5, allow_missing_nodes=True),
        }
    )


class Broken(CountByArea):
    """A recipe whose combine raises with data in its message (which must never reach a user)."""

    manifest = CountByArea.manifest.model_copy(update={"name": "broken_combine"})

    def combine(self, params: Mapping[str, Any], partials: Sequence[Table]) -> Combined:
        raise RuntimeError("secret-row-110101199001011234")


class NoisyCount(CountByArea):
    """A differentially private count for the budget tests: costs its ``epsilon`` parameter."""

    manifest = CountByArea.manifest.model_copy(
        update={
            "name": "noisy_count",
            "params": [
                *CountByArea.manifest.params,
                ParamSpec(name="epsilon", type="float", description="cost", minimum=0.01),
            ],
        }
    )

    def privacy_cost(self, params: Mapping[str, Any]) -> float | None:
        return float(params["epsilon"]) if params.get("epsilon") is not None else 0.1


def registry() -> RecipeRegistry:
    return RecipeRegistry([CountByArea(), CountAllowingMissing(), Broken(), NoisyCount()])
