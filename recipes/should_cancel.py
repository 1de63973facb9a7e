"""``should_cancel``: active registrations of people who have died — candidates for cancellation.

Public security's registrations are updated late or never when a resident dies (the seed city's
"should-be-cancelled" flag). Here public security's node (the PSI client) asks health's death
certificates (the server), by private set intersection through the hub, how many of its active
registrations belong to someone with a death record anywhere in the city — per area of the
registration, at ``level``. Neither agency sees the other's identifiers; the analyst gets counts
through disclosure control. In ``reveal`` mode (approved by both agencies) public security's node
keeps the list of those registrations for its grid workers; it never leaves that node.

Records are keyed by normalised national ID, or — with ``cascade`` — by name + birth date + sex
(``node_agent/identity.py``). The other half of the flag in the seed city — registered, but no
tenancy, contribution, activity, school place or benefit — is ``should_cancel_absent`` (five
answering agencies in one job).
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
    RecipeManifest,
    Target,
    validate_params,
)
from recipes.psi_contract import (
    Identity,
    PsiPlan,
    PsiRecipe,
    cascade_param,
    level_param,
    mode_param,
    one_dataset_each,
)

REGISTRATIONS = "population_registration"
DEATHS = "death_registrations"
PERSON = Identity(id="id_number", name="name", birth="birth_date", sex="sex")


class ShouldCancel(PsiRecipe):
    output_measures: ClassVar[list[str]] = ["deceased", "checked"]
    manifest = RecipeManifest(
        name="should_cancel",
        version="1.0.0",
        title="Registrations that should be cancelled: the registered person has died",
        purpose=(
            "Counts, per area of the registration, of active registrations with public "
            "security whose person has a death certificate with health. Identifiers are "
            "matched by private set intersection between the two agencies' nodes through the "
            "hub's relay: no agency, the hub or the analyst sees the other's identifiers. With "
            "mode 'reveal', approved by both agencies, public security's node also keeps the "
            "list of those registrations for its grid workers; that list never leaves it."
        ),
        datasets=[
            DatasetRole(
                role="registrations",
                kind=REGISTRATIONS,
                required_columns=["id_number", "name", "birth_date", "sex", "reg_grid", "status"],
                description="public security's registrations (the asking node)",
            ),
            DatasetRole(
                role="deaths",
                kind=DEATHS,
                required_columns=["id_number", "name", "birth_date", "sex"],
                description="health's death certificates (the answering node)",
            ),
        ],
        params=[
            mode_param(),
            level_param("the area level (of the registration) the counts are given per"),
            cascade_param(),
        ],
        output=[
            OutputColumn(name="<level>", type="string", description="area (not cardinality)"),
            OutputColumn(name="deceased", type="integer", description="registrations of the dead"),
            OutputColumn(name="checked", type="integer", description="active registrations"),
        ],
        disclosure=DisclosurePolicy(min_cell=10, complementary=True, allow_missing_nodes=False),
    )

    def validate(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]] = ()
    ) -> dict[str, Any]:
        out = validate_params(self.manifest.params, params)
        if catalogue:
            self.targets(out, catalogue)
        return out

    def targets(
        self, params: Mapping[str, Any], catalogue: Sequence[tuple[str, CatalogueDataset]]
    ) -> list[Target]:
        """The registrations (the client) and the death certificates (the server)."""
        return one_dataset_each([REGISTRATIONS, DEATHS], catalogue)

    def psi_plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> PsiPlan:
        mode = params["mode"]
        if dataset.kind == DEATHS:
            return PsiPlan(
                role="server",
                dataset=dataset.name,
                identity=PERSON,
                area_column="grid",
                match_level="city",
                mode=mode,
                cascade=params["cascade"],
            )
        if dataset.kind != REGISTRATIONS:
            raise InvalidParameters(f"dataset {dataset.name!r} is neither registrations nor deaths")
        return PsiPlan(
            role="client",
            dataset=dataset.name,
            identity=PERSON,
            area_column="reg_grid",
            match_level="city",
            group_level=None if mode == "cardinality" else params["level"],
            mode=mode,
            cascade=params["cascade"],
            filters=[Filter(column="status", op="eq", value="active")],
            flag="matched",
        )
