"""Agency-signed grants at the node: stored only when they verify, re-verified before every
task, and pinned to recipe@version, code hash, agency and bounds — so replaying a grant for
another version, altering one, editing the approvals file, or changing the recipe's code after
approval all end in a refusal naming why."""

from __future__ import annotations

import json
from typing import Any

import pytest

from datalab.grants import GrantRefused, agency_key, new_grant, sign_grant, sign_revocation
from datalab.signing import SigningKey
from datalab.wire import AgencyApprovals, PartialStatus, SignedApproval
from node_agent.executor import Executor
from node_agent.grant_store import ApprovalStore
from recipes.contract import RecipeManifest
from recipes.registry import RecipeRegistry
from tests.node_agent.conftest import AGENCY, PlanRecipe, TaskFactory


class PlanRecipeNext(PlanRecipe):
    """The same recipe at a new version (new code): it needs its own approval."""

    manifest = RecipeManifest.model_validate(
        {**PlanRecipe.manifest.model_dump(), "version": "1.1.0"}
    )


def _grant(store: ApprovalStore, recipe: PlanRecipe, **over: Any) -> SignedApproval:
    values: dict[str, Any] = {
        "agency": AGENCY,
        "recipe": recipe.name,
        "version": recipe.version,
        "code_sha256": recipe.code_sha256(),
        "bounds": {},
        "approved_by": "admin",
    }
    values.update(over)
    return sign_grant(agency_key(store.state_dir), new_grant(**values))


def _reason(executor: Executor, signed: Any) -> str:
    answer = executor.execute(signed)
    assert answer.partial.status is PartialStatus.REFUSED, answer.partial
    return answer.partial.reason or ""


def test_a_grant_for_one_version_does_not_cover_another(
    executor: Executor, make_task: TaskFactory, recipe: PlanRecipe
) -> None:
    nxt = PlanRecipeNext()
    executor.registry = RecipeRegistry([recipe, nxt])
    reason = _reason(executor, make_task(version="1.1.0", code_sha256=nxt.code_sha256()))
    assert "test_plan@1.1.0" in reason and "not approved" in reason
    # a hub relabelling the 1.0.0 grant as 1.1.0 breaks the agency's signature
    genuine = executor.approvals.signed()[0]
    relabelled = SignedApproval(
        grant=genuine.grant.model_copy(
            update={"version": "1.1.0", "code_sha256": nxt.code_sha256()}
        ),
        signature=genuine.signature,
    )
    _, refusals = executor.approvals.sync(AgencyApprovals(approvals=[relabelled]))
    assert refusals and "not signed by agency" in refusals[0]
    reason = _reason(executor, make_task(version="1.1.0", code_sha256=nxt.code_sha256()))
    assert "the hub relayed an approval that was refused" in reason


def test_recipe_code_changed_after_approval_is_refused(
    executor: Executor, make_task: TaskFactory, recipe: PlanRecipe
) -> None:
    class ChangedPlanRecipe(PlanRecipe):
        """Same name and version, different code (so a different sha256)."""

        def plan(self, params: Any, dataset: Any) -> Any:
            return super().plan(params, dataset)

    changed = ChangedPlanRecipe()
    assert changed.code_sha256() != recipe.code_sha256()
    executor.registry = RecipeRegistry([changed])
    # the hub and the node both run the new code: the agency's grant still pins the old hash
    reason = _reason(executor, make_task(code_sha256=changed.code_sha256()))
    assert f"the approval pins sha256 {recipe.code_sha256()[:12]}" in reason


def test_widened_bounds_by_the_hub_are_refused(executor: Executor, make_task: TaskFactory) -> None:
    genuine = executor.approvals.signed()[0]
    widened = SignedApproval(
        grant=genuine.grant.model_copy(
            update={"bounds": {}, "issued_at": genuine.grant.issued_at + 1}
        ),
        signature=genuine.signature,
    )
    with pytest.raises(GrantRefused, match="not signed"):
        executor.approvals.accept(widened)
    assert "limit=50 is above the approved maximum 10" in _reason(
        executor, make_task({"limit": 50})
    )


def test_an_edited_approvals_file_is_refused_before_the_task(
    executor: Executor, make_task: TaskFactory
) -> None:
    path = executor.approvals.path
    data = json.loads(path.read_text())
    (entry,) = data["approvals"].values()
    entry["grant"]["bounds"] = {}
    path.write_text(json.dumps(data))
    reason = _reason(executor, make_task({"limit": 50}))
    assert "stored approval refused" in reason and "not signed" in reason


def test_a_revoked_grant_replayed_by_the_hub_is_never_honoured_again(
    executor: Executor, make_task: TaskFactory
) -> None:
    genuine = executor.approvals.signed()[0]
    revocation = sign_revocation(agency_key(executor.approvals.state_dir), genuine.grant, "admin")
    changes, _ = executor.approvals.sync(AgencyApprovals(revocations=[revocation]))
    assert changes == ["revoked test_plan@1.0.0"]
    assert "not approved" in _reason(executor, make_task())
    executor.approvals.sync(AgencyApprovals(approvals=[genuine]))
    with pytest.raises(GrantRefused, match="was revoked"):
        executor.approvals.accept(genuine)
    assert "not approved" in _reason(executor, make_task())


def test_a_forged_revocation_is_refused(executor: Executor, make_task: TaskFactory) -> None:
    genuine = executor.approvals.signed()[0]
    forged = sign_revocation(SigningKey.generate(), genuine.grant, "mallory")
    _, refusals = executor.approvals.sync(AgencyApprovals(revocations=[forged]))
    assert refusals and "not signed" in refusals[0]
    assert executor.execute(make_task()).partial.status is PartialStatus.OK


def test_without_a_pinned_agency_key_nothing_is_stored(tmp_path, recipe: PlanRecipe) -> None:
    donor = ApprovalStore(tmp_path / "donor", AGENCY)
    signed = _grant(donor, recipe)
    store = ApprovalStore(tmp_path / "fresh", AGENCY)
    with pytest.raises(GrantRefused, match="no agency key pinned"):
        store.accept(signed)
    assert store.list() == []
