"""``dp_missed_registration``: the missed-registration cardinality with differential privacy.

The exact ``missed_registration`` protects a PSI cardinality only with the answering node's
rules (a minimum set size, a minimum change between successive sets from the same agency): an
analyst who can make the asking agency's set differ by one person from an earlier one in a way
those rules do not catch ("S, then S plus a target") learns whether the target is registered.
This variant releases the city-wide cardinality (``missed``, ``checked``) with OpenDP noise, so
each answer moves by at most a factor e^ε when any one person is added or removed, and every
answer is charged to a **per-counterparty** budget, on each side of the pair
(``psi:<asking>/<answering>`` and ``psi:<answering>/<asking>``, each capped by its own agency's
admin) at job creation, so the analyst can ask only so often.

Where each step happens, and why:

* **contribution bounding on the asking node** — only it sees the keys: it keeps at most
  ``max_areas_per_person`` elements per key (a person with tenancies in three grids would
  otherwise count three times when matching at grid level). One person then moves ``checked``
  by at most ``k`` and ``missed`` by at most ``k``: the L1 sensitivity of the released pair is
  ``2k``. A person on the answering side moves ``missed`` by at most ``k`` (they match at most
  the ``k`` elements of their key), which that bound covers.
* **noise at the hub**, once, on the combined pair inside this reviewed ``combine`` (as in
  ``dp_aggregate``): the asking node learns the exact cardinality anyway (PSI gives it to the
  client), so DP here protects the *released* result from the analyst, not from that agency.
* **no data-dependent suppression**: the noisy counts are clamped (``0 ≤ missed ≤ checked``),
  and disclosure control on them is post-processing. The answering node's own refusals still
  apply (they protect its data from the asking *agency*): a whole set below its minimum, or
  too close to an earlier set, is refused — see docs/privacy.md for what that reveals.

Only the ``cardinality`` mode is differentially private here. Per-group counts would need the
answering node's per-group minimum (a group below it is not queried, which depends on the
data) replaced by something the noise covers; that is not built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from datalab.errors import JobFailed
from datalab.wire import CatalogueDataset, Table
from recipes.contract import (
    Combined,
    DisclosurePolicy,
    OutputColumn,
    ParamSpec,
    RecipeManifest,
    Target,
)
from recipes.missed_registration import MissedRegistration
from recipes.noise import noisy_counts
from recipes.psi_contract import PsiPlan

_EXACT_ONLY = {"mode", "level"}


class DPMatching:
    """A differentially private matching recipe: its epsilon is charged to the budget of the
    pair of agencies it matches (``lab_server.budget.scopes_for``), not to each dataset."""

    @staticmethod
    def counterparties(targets: Sequence[Target]) -> tuple[str, str]:
        """(asking agency, answering agency): the pair whose PSI budget a job spends.
        ``targets`` lists the asking node's dataset first, then the answering node's."""
        client, server = targets
        return client.agency, server.agency


class DPMissedRegistration(DPMatching, MissedRegistration):
    manifest = RecipeManifest(
        name="dp_missed_registration",
        version="1.0.0",
        title="Missed registrations, city-wide, with differential privacy",
        purpose=(
            "How many people one agency sees in the city (a current tenancy, night-time "
            "presence, or social-insurance contributions) have no active registration with "
            "public security where they are — one noisy count for the whole city. Identifiers "
            "are matched by private set intersection between the two agencies' nodes; the "
            "asking node keeps at most 'max_areas_per_person' areas per person; the hub adds "
            "OpenDP noise to the totals and charges epsilon to the analyst's budget for this "
            "pair of agencies before running."
        ),
        datasets=MissedRegistration.manifest.datasets,
        params=[
            *(p for p in MissedRegistration.manifest.params if p.name not in _EXACT_ONLY),
            ParamSpec(
                name="epsilon",
                type="float",
                required=True,
                minimum=0.01,
                maximum=10.0,
                description="the privacy loss this query spends from the pair's budget",
            ),
            ParamSpec(
                name="max_areas_per_person",
                type="int",
                default=1,
                minimum=1,
                maximum=5,
                description="areas (at match_level) one person may count in; the rest dropped",
            ),
        ],
        output=[
            OutputColumn(name="missed", type="integer", description="noisy count (≥ 0)"),
            OutputColumn(name="checked", type="integer", description="noisy count (≥ missed)"),
        ],
        # noise protects the released pair; suppressing a small *noisy* count is
        # post-processing and costs nothing, so min_cell stays
        disclosure=DisclosurePolicy(
            min_cell=10,
            complementary=False,
            min_query_set=0,
            min_complement=0,
            dominance_n=0,
            p_percent=0.0,
            allow_missing_nodes=False,
        ),
    )

    def privacy_cost(self, params: Mapping[str, Any]) -> float | None:
        return float(params["epsilon"])

    def psi_plan(self, params: Mapping[str, Any], dataset: CatalogueDataset) -> PsiPlan:
        exact = {**params, "mode": "cardinality", "level": "district"}
        plan = super().psi_plan(exact, dataset)
        if plan.role == "client":
            plan = plan.model_copy(
                update={"max_areas_per_key": int(params.get("max_areas_per_person") or 1)}
            )
        return plan

    def combine(self, params: Mapping[str, Any], partials: Sequence[Table]) -> Combined:
        """The exact pair, then OpenDP noise on it; nothing exact leaves here."""
        exact = super().combine(params, partials).table
        if len(exact.rows) != 1 or any(v is None for v in exact.rows[0]):
            raise JobFailed("the asking node returned no city-wide count")
        missed, checked = (int(v) for v in exact.rows[0])
        if missed < 0 or checked < missed:
            raise JobFailed("the asking node returned impossible counts")
        k = int(params.get("max_areas_per_person") or 1)
        epsilon = float(params["epsilon"])
        noisy_missed, noisy_checked = noisy_counts([missed, checked], 2 * k, epsilon)
        checked_out = max(noisy_checked, 0)  # post-processing: clamp to what is possible
        missed_out = min(max(noisy_missed, 0), checked_out)
        return Combined(
            table=Table(columns=list(self.output_measures), rows=[[missed_out, checked_out]]),
            key_columns=[],
            count_column=self.output_measures[0],
        )
