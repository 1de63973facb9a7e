"""``separation``: people whose household registration is in another area than where they live.

The seed city's third flag, person–household separation (人户分离): a local resident whose
*household* registration (public security, ``reg_type = household``) sits in one area while they
actually live in another. Evidence of where someone lives is a current tenancy (housing) or
night-time presence at home (the activity source).

Private set intersection gives the asking node only intersection sizes, so the flag is computed
as a difference of two matches of the SAME people, in one job under one pair of fresh keys:

* each person the source sees is placed in one area (where most of their records are), and
* matched once as ``key@<area at match_level>`` (household registration in the area where they
  live) and once as ``key@city`` (household registration anywhere in the city);
* ``separated`` = matched in the city − matched in the area, per group of the client's areas.

Both counts are of the same people, so the difference counts each person at most once (a
registration in the area implies one in the city: the answering node inserts its keys at both
levels). The analyst gets ``separated`` and ``checked`` per area through disclosure control;
in ``reveal`` mode (approved by both agencies) the asking node keeps the list of its own
records whose household registration is elsewhere, for its grid workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

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
from recipes.missed_registration import (
    REGISTRATION_IDENTITY,
    REGISTRATIONS,
    MissedRegistration,
)
from recipes.psi_contract import PsiPlan, PsiRecipe, cascade_param, level_param, mode_param

#: the evidence of residence (a subset of missed_registration's sources: contributions say
#: where people work, not where they live)
RESIDENCE = ("tenancy", "night_activity")


class Separation(PsiRecipe):
    output_measures: ClassVar[list[str]] = ["separated", "checked"]
    manifest = RecipeManifest(
        name="separation",
        version="1.0.0",
        title="Person–household separation: household registered in another area",
        purpose=(
            "Counts, per area where people live (a current tenancy or night-time presence at "
            "home), of those whose household registration with public security is in another "
            "area of the city. Identifiers are matched by private set intersection between the "
            "two agencies' nodes through the hub's relay: no agency, the hub or the analyst "
            "sees the other's identifiers. With mode 'reveal', approved by both agencies, the "
            "asking agency's node also keeps the list of those records for its grid workers; "
            "that list never leaves it."
        ),
        datasets=[
            DatasetRole(
                role="registrations",
                kind=REGISTRATIONS,
                required_columns=[
                    "id_number",
                    "name",
                    "birth_date",
                    "sex",
                    "reg_type",
                    "reg_grid",
                    "status",
                ],
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
        ],
        params=[
            ParamSpec(
                name="source",
                type="str",
                required=True,
                choices=list(RESIDENCE),
                description="the evidence of where people live",
            ),
            mode_param(),
            level_param("the area level (where people live) the counts are given per"),
            ParamSpec(
                name="match_level",
                type="level",
                default="grid",
                choices=["district", "street", "community", "grid"],
                description="'another area' means another area at this level",
            ),
            cascade_param(),
            ParamSpec(
                name="as_of",
                type="str",
                default="2026-06-30",
                description="the reference date (YYYY-MM-DD) for current tenancies",
            ),
            ParamSpec(
                name="min_nights",
                type="int",
                default=2,
                minimum=1,
                maximum=20,
                description="night_activity: nights seen at home to count as living there",
            ),
        ],
        output=[
            OutputColumn(name="<level>", type="string", description="area (not cardinality)"),
            OutputColumn(
                name="separated",
                type="integer",
                description="people living here whose household registration is elsewhere",
            ),
            OutputColumn(name="checked", type="integer", description="people the source holds"),
        ],
        disclosure=DisclosurePolicy(min_cell=10, complementary=True, allow_missing_nodes=False),
    )

    def validate(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]] = ()
    ) -> dict[str, Any]:
        out = validate_params(self.manifest.params, params)
        MissedRegistration().validate({"source": out["source"], "as_of": out["as_of"]})
        if catalogue:
            self.targets(out, catalogue)
        return out

    def targets(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]]
    ) -> list[Target]:
        """The source's dataset (the client) and the registrations (the server)."""
        return MissedRegistration().targets(params, catalogue)

    def psi_plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> PsiPlan:
        if dataset.kind == REGISTRATIONS:
            return PsiPlan(
                role="server",
                dataset=dataset.name,
                identity=REGISTRATION_IDENTITY,
                area_column="reg_grid",
                match_level=params["match_level"],
                outer_level="city",
                mode=params["mode"],
                cascade=params["cascade"],
                filters=[
                    Filter(column="status", op="eq", value="active"),
                    Filter(column="reg_type", op="eq", value="household"),
                ],
            )
        # the same evidence of presence as missed_registration reads (its dataset, filters and
        # period), matched at two levels
        evidence = MissedRegistration().psi_plan({**params, "match_level": "grid"}, dataset)
        return evidence.model_copy(
            update={"match_level": params["match_level"], "outer_level": "city"}
        )
