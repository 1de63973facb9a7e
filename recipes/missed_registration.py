"""``missed_registration``: people who live or work in an area but are not registered there.

The headline use of the lab (``SEED-CONTEXT.md``): the city cross-checked agencies' records to
find residents without a registration where they actually are, and sent grid workers to check.
Here one agency's evidence of presence is matched, by private set intersection, against public
security's active registrations in the same area — neither agency, nor the hub, nor the analyst
sees the other's identifiers:

* ``tenancy`` — housing's tenancy contracts current on ``as_of``, in the contract's grid;
* ``night_activity`` — the activity source's night-time events at home in a grid (a person seen
  there on at least ``min_nights`` nights), with the 30-day window the source holds;
* ``contributions`` — social-insurance contributions of the last three months, in the
  employer's grid (people rarely live where they work: match at ``match_level="city"`` to ask
  "contributing here, registered nowhere in the city").

The asking agency (the PSI client) learns, per area at ``level``, how many of its people
(distinct keys) have no active registration in the same area at ``match_level`` — ``missed`` —
out of ``checked``; the analyst gets those counts through disclosure control. In ``reveal`` mode
(approved by both agencies) the asking node also keeps the list of its own records without a
registration there, for its grid workers; it never leaves that node.

Records are keyed by normalised national ID, or — with ``cascade`` — by name + birth date + sex
where the ID is missing or fails its checksum (``node_agent/identity.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from datalab.errors import InvalidParameters
from datalab.geography import Level
from datalab.wire import CatalogueDataset
from recipes.contract import (
    DatasetRole,
    DisclosurePolicy,
    Filter,
    OutputColumn,
    ParamSpec,
    RecipeManifest,
    Target,
    validate_params,
)
from recipes.psi_contract import (
    ActivePeriod,
    Identity,
    PsiPlan,
    PsiRecipe,
    cascade_param,
    level_param,
    mode_param,
    one_dataset_each,
)

REGISTRATIONS = "population_registration"

#: source → (dataset kind, identity, area column)
SOURCES: dict[str, tuple[str, Identity, str]] = {
    "tenancy": (
        "tenancy",
        Identity(
            id="tenant_id_number",
            name="tenant_name",
            birth="tenant_birth_date",
            sex="tenant_sex",
        ),
        "grid",
    ),
    "night_activity": ("activity_events", Identity(id="person_id"), "grid"),
    "contributions": ("social_insurance_contributions", Identity(id="id_number"), "employer_grid"),
}
REGISTRATION_IDENTITY = Identity(id="id_number", name="name", birth="birth_date", sex="sex")


class MissedRegistration(PsiRecipe):
    manifest = RecipeManifest(
        name="missed_registration",
        version="1.0.0",
        title="Missed registrations: present in an area, not registered there",
        purpose=(
            "Counts, per area, of people whom one agency sees in an area (a current tenancy, "
            "night-time presence, or social-insurance contributions) but who have no active "
            "registration with public security in that area. Identifiers are matched by "
            "private set intersection between the two agencies' nodes through the hub's relay: "
            "no agency, the hub or the analyst sees the other's identifiers. With mode "
            "'reveal', approved by both agencies, the asking agency's node also keeps the list "
            "of its own unmatched records for its grid workers; that list never leaves it."
        ),
        datasets=[
            DatasetRole(
                role="registrations",
                kind=REGISTRATIONS,
                required_columns=["id_number", "name", "birth_date", "sex", "reg_grid", "status"],
                description="public security's registrations (the answering node)",
            ),
            DatasetRole(
                role="tenancy",
                kind="tenancy",
                required_columns=["tenant_id_number", "grid", "start_date", "end_date"],
                description="housing's tenancy contracts (source 'tenancy')",
            ),
            DatasetRole(
                role="night_activity",
                kind="activity_events",
                required_columns=["person_id", "grid", "period", "activity"],
                description="activity events (source 'night_activity')",
            ),
            DatasetRole(
                role="contributions",
                kind="social_insurance_contributions",
                required_columns=["id_number", "employer_grid", "month"],
                description="social-insurance contributions (source 'contributions')",
            ),
        ],
        params=[
            ParamSpec(
                name="source",
                type="str",
                required=True,
                choices=list(SOURCES),
                description="the evidence of presence to match against registrations",
            ),
            mode_param(),
            level_param(),
            ParamSpec(
                name="match_level",
                type="level",
                default="grid",
                choices=["city", "district", "street", "community", "grid"],
                description="registered 'there' means in the same area at this level",
            ),
            cascade_param(),
            ParamSpec(
                name="as_of",
                type="str",
                default="2026-06-30",
                description="the reference date (YYYY-MM-DD) for current tenancies/contributions",
            ),
            ParamSpec(
                name="min_nights",
                type="int",
                default=2,
                minimum=1,
                maximum=20,
                description="night_activity: nights seen in the grid to count as living there",
            ),
        ],
        output=[
            OutputColumn(
                name="<level>", type="string", description="area code (not in cardinality)"
            ),
            OutputColumn(name="missed", type="integer", description="people without registration"),
            OutputColumn(name="checked", type="integer", description="people the source holds"),
        ],
        disclosure=DisclosurePolicy(min_cell=10, complementary=True, allow_missing_nodes=False),
    )

    def validate(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]] = ()
    ) -> dict[str, Any]:
        out = validate_params(self.manifest.params, params)
        try:
            dt.date.fromisoformat(out["as_of"])
        except ValueError:
            raise InvalidParameters("parameter 'as_of' must be a date YYYY-MM-DD") from None
        if len(out["as_of"]) != 10:
            raise InvalidParameters("parameter 'as_of' must be a date YYYY-MM-DD")
        if catalogue:
            self.targets(out, catalogue)
        return out

    def targets(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]]
    ) -> list[Target]:
        """The source's dataset (the client) and the registrations (the server): one each."""
        kind = SOURCES[params["source"]][0]
        return one_dataset_each([kind, REGISTRATIONS], catalogue)

    def psi_plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> PsiPlan:
        source = params["source"]
        kind, identity, area = SOURCES[source]
        match_level: Level = params["match_level"]
        mode = params["mode"]
        if dataset.kind == REGISTRATIONS:
            return PsiPlan(
                role="server",
                dataset=dataset.name,
                identity=REGISTRATION_IDENTITY,
                area_column="reg_grid",
                match_level=match_level,
                mode=mode,
                cascade=params["cascade"],
                filters=[Filter(column="status", op="eq", value="active")],
            )
        if dataset.kind != kind:
            raise InvalidParameters(f"dataset {dataset.name!r} is not of kind {kind!r}")
        as_of = params["as_of"]
        filters: list[Filter] = []
        active = None
        min_records = 1
        if source == "tenancy":
            active = ActivePeriod(start="start_date", end="end_date", on=as_of)
        elif source == "night_activity":
            filters = [
                Filter(column="period", op="eq", value="night"),
                Filter(column="activity", op="eq", value="home"),
            ]
            min_records = params["min_nights"]
        else:
            filters = [
                Filter(column="month", op="ge", value=_months_before(as_of, 2)),
                Filter(column="month", op="le", value=as_of[:7]),
            ]
        return PsiPlan(
            role="client",
            dataset=dataset.name,
            identity=identity,
            area_column=area,
            match_level=match_level,
            group_level=None if mode == "cardinality" else params["level"],
            mode=mode,
            cascade=params["cascade"],
            filters=filters,
            active=active,
            min_records=min_records,
        )


def _months_before(as_of: str, months: int) -> str:
    year, month = int(as_of[:4]), int(as_of[5:7]) - months
    while month < 1:
        year, month = year - 1, month + 12
    return f"{year:04d}-{month:02d}"
