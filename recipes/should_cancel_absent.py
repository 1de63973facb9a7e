"""``should_cancel_absent``: active registrations of people no agency sees in the city any more.

The second half of the seed city's "should-be-cancelled" flag: registered, but no tenancy, no
social-insurance contribution, no activity, no school place and no benefit in the city — people
who left (or died) without anyone cancelling their registration. Public security's node (the
PSI client) asks FIVE answering agencies in one job — housing (tenancies current on ``as_of``),
hrss (contributions in the ``months`` months up to ``as_of``), the activity source (any event in
the window it holds, 30 days), education (pupils enrolled now) and civil affairs (people
receiving a benefit now) — and a registration is flagged only when none of them holds it.
Version 1.1.0 added the last two: the flag's false positives are residents nobody sees, and
pupils (who neither work nor rent) and benefit recipients (mostly the elderly) are many of them
— precision 31 % → 41 % at the same recall on the test city (docs/matching.md).

"None of them" cannot be computed from intersection sizes alone (|A∖(S₁∪S₂∪S₃)| needs the
overlaps of the answering sets, which no one may learn), so the asking node runs each match in
owner-only reveal mode: it learns which of ITS OWN registrations each agency holds, combines
that inside its domain, and sends the analyst only counts per area. That is more than a
cardinality, so every one of the four agencies must approve reveal for this recipe (their nodes
refuse otherwise), even when the analyst asks for counts; with ``mode="reveal"`` public
security's node also keeps the list of flagged registrations for its grid workers. Each
answering node sees one client set of the usual kind and nothing of the others' answers; each
run uses a fresh client key per answering agency.

Matching is at city level ("seen anywhere in the city"): contributions are paid where people
work, and the flag is about people who are gone. Keys: normalised national ID; the answering
nodes also insert name + birth date + sex keys where they have them (``node_agent/identity``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from datalab.errors import InvalidParameters
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
from recipes.missed_registration import REGISTRATIONS, SOURCES, MissedRegistration, _months_before
from recipes.psi_contract import (
    ActivePeriod,
    Identity,
    PsiPlan,
    PsiRecipe,
    level_param,
    mode_param,
    one_dataset_each,
)

PERSON = Identity(id="id_number", name="name", birth="birth_date", sex="sex")
#: the answering agencies' datasets, in the order of the job's tasks
PRESENCE = (
    "tenancy",
    "social_insurance_contributions",
    "activity_events",
    "school_enrolment",
    "benefit_recipients",
)
#: how the two answering datasets that are not sources of ``missed_registration`` name people,
#: and their area column (unused for matching: this recipe matches at city level)
_MORE_PRESENCE: dict[str, tuple[Identity, str]] = {
    "school_enrolment": (
        Identity(id="student_id_number", name="student_name", birth="birth_date", sex="sex"),
        "school_grid",
    ),
    "benefit_recipients": (PERSON, "grid"),
}


class ShouldCancelAbsent(PsiRecipe):
    output_measures: ClassVar[list[str]] = ["absent", "checked"]
    manifest = RecipeManifest(
        name="should_cancel_absent",
        version="1.1.0",
        title="Registrations that should be cancelled: nobody sees the person in the city",
        purpose=(
            "Counts, per area of the registration, of active registrations with public "
            "security whose person has no current tenancy (housing), no social-insurance "
            "contribution in the last N months (hrss), no recorded activity (activity "
            "source), no school place (education) and no benefit (civil affairs). Matched by "
            "private set intersection with each of the five agencies "
            "through the hub's relay; public security's node learns which of its own "
            "registrations each agency holds and combines them in its domain (all four "
            "agencies approve this reveal). The analyst gets counts; with mode 'reveal' public "
            "security's node also keeps the list for its grid workers."
        ),
        datasets=[
            DatasetRole(
                role="registrations",
                kind=REGISTRATIONS,
                required_columns=["id_number", "reg_grid", "status"],
                description="public security's registrations (the asking node)",
            ),
            DatasetRole(
                role="tenancy",
                kind="tenancy",
                required_columns=["tenant_id_number", "grid", "start_date", "end_date"],
                description="housing's tenancy contracts (answering)",
            ),
            DatasetRole(
                role="contributions",
                kind="social_insurance_contributions",
                required_columns=["id_number", "employer_grid", "month"],
                description="hrss's social-insurance contributions (answering)",
            ),
            DatasetRole(
                role="activity",
                kind="activity_events",
                required_columns=["person_id", "grid"],
                description="the activity source's events (answering)",
            ),
            DatasetRole(
                role="enrolment",
                kind="school_enrolment",
                required_columns=["student_id_number", "school_grid"],
                description="education's current school enrolment, pupils only (answering)",
            ),
            DatasetRole(
                role="benefits",
                kind="benefit_recipients",
                required_columns=["id_number", "grid"],
                description="civil affairs' current benefit recipients (answering)",
            ),
        ],
        params=[
            mode_param("one count, a count per area, or the owner-only list too"),
            level_param("the area level (of the registration) the counts are given per"),
            ParamSpec(
                name="months",
                type="int",
                default=3,
                minimum=1,
                maximum=12,
                description="contributions: months up to as_of in which none was paid",
            ),
            ParamSpec(
                name="as_of",
                type="str",
                default="2026-06-30",
                description="the reference date (YYYY-MM-DD)",
            ),
        ],
        output=[
            OutputColumn(name="<level>", type="string", description="area (not cardinality)"),
            OutputColumn(
                name="absent", type="integer", description="registrations nobody sees in the city"
            ),
            OutputColumn(name="checked", type="integer", description="active registrations"),
        ],
        disclosure=DisclosurePolicy(min_cell=10, complementary=True, allow_missing_nodes=False),
    )

    def validate(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]] = ()
    ) -> dict[str, Any]:
        out = validate_params(self.manifest.params, params)
        MissedRegistration().validate({"source": "tenancy", "as_of": out["as_of"]})
        if catalogue:
            self.targets(out, catalogue)
        return out

    def targets(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]]
    ) -> list[Target]:
        """The registrations (the client) first, then the five answering datasets."""
        out = one_dataset_each([REGISTRATIONS, *PRESENCE], catalogue)
        if len({t.agency for t in out}) != len(out):
            raise InvalidParameters("each dataset of this match must be another agency's")
        return out

    def psi_plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> PsiPlan:
        as_of = params["as_of"]
        if dataset.kind == REGISTRATIONS:
            return PsiPlan(
                role="client",
                dataset=dataset.name,
                identity=PERSON,
                area_column="reg_grid",
                match_level="city",
                group_level=None if params["mode"] == "cardinality" else params["level"],
                mode="reveal",
                verification_list=params["mode"] == "reveal",
                filters=[Filter(column="status", op="eq", value="active")],
            )
        by_kind = {kind: (identity, area) for kind, identity, area in SOURCES.values()}
        by_kind.update(_MORE_PRESENCE)
        if dataset.kind not in PRESENCE:
            raise InvalidParameters(f"dataset {dataset.name!r} is not one this recipe matches")
        identity, area = by_kind[dataset.kind]
        filters: list[Filter] = []
        active = None
        if dataset.kind == "tenancy":
            active = ActivePeriod(start="start_date", end="end_date", on=as_of)
        elif dataset.kind == "social_insurance_contributions":
            filters = [
                Filter(column="month", op="ge", value=_months_before(as_of, params["months"] - 1)),
                Filter(column="month", op="le", value=as_of[:7]),
            ]
        return PsiPlan(
            role="server",
            dataset=dataset.name,
            identity=identity,
            area_column=area,
            match_level="city",
            mode="reveal",
            filters=filters,
            active=active,
        )
