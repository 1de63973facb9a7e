"""``key_groups``: how many people of a key group live in each area.

Routine and emergency services (home visits, heat-wave checks, evacuation) need to know where
the elderly, the chronically ill, people with disabilities and pregnant women are, per
community or grid — counts, never who. The groups come from two agencies' registers:

* elderly — ``benefit_recipients`` rows with ``benefit = 'elderly_allowance'``, area ``grid``;
* chronic_illness / disability / pregnancy — ``health_conditions`` rows with
  ``condition = <group>``, area ``residence_grid``.

The count is of rows, not of distinct persons: identifiers in these registers are dirty (formats,
typos, missing), so ``count_distinct`` of them would both under- and over-count, and a row count
is what each register's own statistics report. Duplicated registrations inflate it slightly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from datalab.errors import InvalidParameters
from datalab.geography import Level, is_finer
from datalab.wire import CatalogueDataset, Table
from recipes.contract import (
    AggregatePlan,
    Combined,
    DatasetRole,
    DisclosurePolicy,
    Filter,
    GroupKey,
    Measure,
    OutputColumn,
    ParamSpec,
    Recipe,
    RecipeManifest,
    Target,
    add_partials,
    validate_params,
)

#: group → (dataset kind, area column, filter column, filter value)
SOURCES: dict[str, tuple[str, str, str, str]] = {
    "elderly": ("benefit_recipients", "grid", "benefit", "elderly_allowance"),
    "chronic_illness": ("health_conditions", "residence_grid", "condition", "chronic_illness"),
    "disability": ("health_conditions", "residence_grid", "condition", "disability"),
    "pregnancy": ("health_conditions", "residence_grid", "condition", "pregnancy"),
}


class KeyGroupsByArea(Recipe):
    manifest = RecipeManifest(
        name="key_groups",
        version="1.0.0",
        title="Key groups per area",
        purpose=(
            "Counts of a key group for routine and emergency services — the elderly (elderly "
            "allowance recipients), people with a chronic illness or a disability, and pregnant "
            "women (health registers) — per district, street, community or grid. Rows are "
            "counted, not distinct persons, because identifiers in these registers are dirty."
        ),
        datasets=[
            DatasetRole(
                role="benefits",
                kind="benefit_recipients",
                required_columns=["grid", "benefit"],
                description="civil affairs' benefit recipients (group 'elderly')",
            ),
            DatasetRole(
                role="health",
                kind="health_conditions",
                required_columns=["residence_grid", "condition"],
                description="health registers (chronic_illness, disability, pregnancy)",
            ),
        ],
        params=[
            ParamSpec(
                name="group",
                type="str",
                required=True,
                choices=list(SOURCES),
                description="the key group to count",
            ),
            ParamSpec(
                name="level",
                type="level",
                default="community",
                choices=["district", "street", "community", "grid"],
                description="the area level to count per",
            ),
        ],
        output=[
            OutputColumn(
                name="<level>",
                type="string",
                description="area code at the chosen level (the column is named after it)",
            ),
            OutputColumn(name="group", type="string", description="the key group"),
            OutputColumn(name="n", type="integer", description="register rows in the area"),
        ],
        disclosure=DisclosurePolicy(min_cell=10, complementary=True, allow_missing_nodes=False),
    )

    def validate(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]] = ()
    ) -> dict[str, Any]:
        """Manifest checks, then (when a catalogue is given) that the group's source datasets
        exist and carry the columns and the value the recipe filters on."""
        out = validate_params(self.manifest.params, params)
        if not catalogue:
            return out
        kind, area, column, value = SOURCES[out["group"]]
        datasets = [d for _, d in catalogue if d.kind == kind]
        if not datasets:
            raise InvalidParameters(
                f"no dataset of kind {kind!r} in the catalogue: group {out['group']!r} needs one"
            )
        for d in datasets:
            columns = {c.name: c for c in d.columns}
            for name in (area, column):
                if name not in columns:
                    raise InvalidParameters(
                        f"dataset {d.name!r} of kind {kind!r} lacks the column {name!r}"
                    )
            geo = columns[area].geo_level
            if geo is None:
                raise InvalidParameters(f"column {area!r} of dataset {d.name!r} holds no areas")
            if is_finer(out["level"], geo):
                raise InvalidParameters(
                    f"column {area!r} holds {geo} codes: it cannot be counted per {out['level']}"
                )
            declared = columns[column].values
            if declared is not None and value not in declared:
                raise InvalidParameters(
                    f"column {column!r} of dataset {d.name!r} does not declare the value {value!r}"
                )
        return out

    def targets(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]]
    ) -> list[Target]:
        """Every dataset of the group's source kind, in catalogue order."""
        kind = SOURCES[params["group"]][0]
        return [Target(agency=a, dataset=d.name) for a, d in catalogue if d.kind == kind]

    def plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> AggregatePlan:
        """Rows of the group per area at the level; rows without an area are left out."""
        _, area, column, value = SOURCES[params["group"]]
        level: Level = params.get("level") or "community"
        return AggregatePlan(
            dataset=dataset.name,
            group_by=[GroupKey(column=area, level=level, alias=level)],
            filters=[
                Filter(column=column, op="eq", value=value),
                Filter(column=area, op="not_null"),
            ],
            measures=[Measure(fn="count", alias="n")],
        )

    def combine(self, params: Mapping[str, Any], partials: Sequence[Table]) -> Combined:
        """Add the partials' counts per area and label every row with the group."""
        level: Level = params.get("level") or "community"
        group = params["group"]
        rows = [[area, group, int(n)] for (area,), (n,) in add_partials(partials, [level], ["n"])]
        return Combined(
            table=Table(columns=[level, "group", "n"], rows=rows),
            key_columns=[level, "group"],
            count_column="n",
            geo_column=level,
            geo_level=level,
        )
