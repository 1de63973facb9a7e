"""Running one task: every check the node makes on its own, then the computation, then the
signed answer.

The order matters: the hub's signature is verified before anything else in the task is trusted,
the nonce is claimed before any row is read, and the column policy is checked before the
connector runs. Every outcome is written to the local log; what the hub receives is a signed
Partial whose ``reason`` is public (it reaches the analyst), while the detail stays here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from datalab.canonical import digest
from datalab.errors import DatalabError, TaskRefused
from datalab.signing import BadSignature, SigningKey, verify_value
from datalab.wire import (
    ApprovalGrant,
    Partial,
    PartialStatus,
    SignedPartial,
    SignedTask,
    Table,
    Task,
)
from node_agent.connector import Connector
from node_agent.grant_store import ApprovalStore
from node_agent.log import LocalLog
from node_agent.policy import check_plan, check_psi_plan, check_query_set
from node_agent.psi_exchange import PsiParty
from node_agent.replay import NonceStore, check_fresh
from node_agent.scoring import run_scoring
from node_agent.settings import NodeSettings
from recipes.contract import AggregatePlan, Measure, Recipe
from recipes.plan_sql import PlanError
from recipes.psi_contract import PsiRecipe, group_column
from recipes.registry import RecipeRegistry
from recipes.scoring_contract import ModelScoringRecipe

logger = logging.getLogger(__name__)

#: The reason a failed task gives the hub: the detail (which may quote the engine's error, and
#: an engine error can quote a data value) stays in the node's console log.
#: the most earlier queries one task's audit may name (the hub sends the latest ones).
MAX_AUDITED = 120

FAILED_REASON = "the node could not compute this task; its operator has the details"


def sign_partial(key: SigningKey, partial: Partial) -> SignedPartial:
    return SignedPartial(partial=partial, signature=key.sign_value(partial.model_dump(mode="json")))


@dataclass
class Executor:
    """Everything a task is checked against and run with, wired once at start."""

    settings: NodeSettings
    connector: Connector
    registry: RecipeRegistry
    approvals: ApprovalStore
    nonces: NonceStore
    log: LocalLog
    node_key: SigningKey
    hub_public_key: str
    #: the node's PSI role runner (None: this node refuses matching tasks)
    psi: PsiParty | None = None
    _hashes: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def execute(self, signed: SignedTask) -> SignedPartial:
        """Check and run one task; always answers with a signed partial, never raises."""
        started = time.perf_counter()
        task = signed.task
        self.log.append("task_received", _task_summary(task))
        try:
            table, query_set_size, atoms = self._checked_run(signed)
        except TaskRefused as exc:
            self.log.append(
                "task_refused",
                {
                    "task_id": task.task_id,
                    "job_id": task.job_id,
                    "reason": exc.message,
                    "detail": exc.detail,
                },
            )
            return self._answer(task, started, PartialStatus.REFUSED, reason=exc.message)
        except Exception as exc:
            logger.exception("task %s failed", task.task_id)
            self.log.append(
                "task_failed",
                {"task_id": task.task_id, "job_id": task.job_id, "error": type(exc).__name__},
            )
            return self._answer(task, started, PartialStatus.FAILED, reason=FAILED_REASON)
        answer = self._answer(
            task,
            started,
            PartialStatus.OK,
            table=table,
            query_set_size=query_set_size,
            audit_atoms=atoms,
        )
        self.log.append(
            "task_done",
            {
                "task_id": task.task_id,
                "job_id": task.job_id,
                "table_sha256": digest(table.model_dump(mode="json")),
                "rows": len(table.rows),
                "query_set_size": query_set_size,
                "seconds": answer.partial.seconds,
                "partial_signature": answer.signature,
            },
        )
        return answer

    def _checked_run(self, signed: SignedTask) -> tuple[Table, int, Table | None]:
        task = signed.task
        try:
            verify_value(self.hub_public_key, task.model_dump(mode="json"), signed.signature)
        except BadSignature:
            raise TaskRefused("task signature does not verify against the pinned hub key") from None
        if task.agency != self.settings.agency:
            raise TaskRefused(
                f"task is addressed to agency {task.agency!r}; this node is "
                f"{self.settings.agency!r}"
            )
        check_fresh(task)
        self.nonces.claim(task)
        key = f"{task.recipe}@{task.version}"
        try:
            recipe = self.registry.get(task.recipe, task.version)
        except DatalabError:
            raise TaskRefused(f"recipe {key} is not in this node's recipe library") from None
        local_sha = self._code_sha256(key, recipe)
        if local_sha != task.code_sha256:
            raise TaskRefused(
                f"recipe {key}: the hub's code (sha256 {task.code_sha256[:12]}…) differs from "
                f"this node's copy (sha256 {local_sha[:12]}…); both must run the same reviewed code"
            )
        try:
            params = recipe.validate(task.params)
        except DatalabError as exc:
            raise TaskRefused(f"recipe {key}: {exc.message}") from None
        approval = self.approvals.check(task, params)
        if isinstance(recipe, PsiRecipe):
            return self._run_psi(task, recipe, params, approval)
        catalogue = {d.name: d for d in self.connector.datasets()}
        dataset = catalogue.get(task.dataset)
        spec = self.connector.spec(task.dataset)
        if dataset is None or spec is None:
            raise TaskRefused(f"agency {self.settings.agency} holds no dataset {task.dataset!r}")
        if isinstance(recipe, ModelScoringRecipe):  # scored inside the node, no plan
            return (*run_scoring(recipe, params, spec, self.connector, self.settings), None)
        try:
            plan = recipe.plan(params, dataset)
        except DatalabError as exc:
            raise TaskRefused(f"recipe {key}: {exc.message}") from None
        if plan.dataset != task.dataset:
            raise TaskRefused(
                f"recipe {key} planned dataset {plan.dataset!r}, the task is for {task.dataset!r}"
            )
        check_plan(plan, spec, self.settings)
        try:
            table, query_set_size = self.connector.run(plan)
        except PlanError as exc:
            raise TaskRefused(f"recipe {key}: {exc}") from None
        if recipe.privacy_cost(params) is None:  # a DP release depends on data only via noise
            check_query_set(query_set_size, self.settings)
        # atoms matter only against earlier queries: with none, no second scan
        atoms = self._audit_atoms(plan, task.audit, spec) if task.audit else None
        return table, query_set_size, atoms

    def _audit_atoms(self, plan: AggregatePlan, audit: list[dict[str, Any]], spec: Any) -> Table:
        """Atom counts over this plan and the earlier ones the hub sent (each checked against
        the column policy like any plan: the hub cannot use auditing to probe a column)."""
        earlier: list[AggregatePlan] = []
        for item in audit[:MAX_AUDITED]:
            try:
                prior = AggregatePlan(
                    dataset=plan.dataset,
                    filters=item.get("filters") or [],
                    group_by=item.get("group_by") or [],
                    measures=[Measure(fn="count", alias="n")],
                )
            except ValueError:
                raise TaskRefused("the task's audit list holds a malformed query") from None
            check_plan(prior, spec, self.settings)
            earlier.append(prior)
        try:
            return self.connector.atoms([plan, *earlier])
        except PlanError as exc:
            raise TaskRefused(f"query auditing: {exc}") from None

    def _run_psi(
        self, task: Task, recipe: PsiRecipe, params: dict[str, Any], approval: ApprovalGrant
    ) -> tuple[Table, int, None]:
        """A matching task: the same checks, then this node's PSI role through the hub."""
        key = recipe.key
        agency = self.settings.agency
        if self.psi is None:
            raise TaskRefused(f"node {agency} is not set up for matching")
        catalogue = {d.name: d for d in self.connector.datasets()}
        dataset = catalogue.get(task.dataset)
        spec = self.connector.spec(task.dataset)
        if dataset is None or spec is None:
            raise TaskRefused(f"agency {agency} holds no dataset {task.dataset!r}")
        try:
            plan = recipe.psi_plan(params, dataset)
        except DatalabError as exc:
            raise TaskRefused(f"recipe {key}: {exc.message}") from None
        if plan.dataset != task.dataset:
            raise TaskRefused(
                f"recipe {key} planned dataset {plan.dataset!r}, the task is for {task.dataset!r}"
            )
        # the plan's mode, not the analyst's: a recipe may need reveal to compute counts
        if plan.mode == "reveal" and "reveal" not in approval.bounds.get("mode", {}).get(
            "choices", []
        ):
            raise TaskRefused(
                f"owner-only reveal needs agency {agency}'s explicit approval: datalab node "
                f"approve --agency {agency} --recipe {key} --bounds "
                '\'{"mode": {"choices": ["per_group", "reveal"]}}\''
            )
        check_psi_plan(plan, spec, self.settings)
        level = group_column(params)
        columns = [*([level] if level else []), *recipe.output_measures]
        table, query_set_size = self.psi.run(task, plan, columns)
        if recipe.privacy_cost(params) is None:
            check_query_set(query_set_size, self.settings)
        return table, query_set_size, None

    def _code_sha256(self, key: str, recipe: Recipe) -> str:
        """The recipe's hash, computed once: it is the code loaded in this process that runs,
        and re-reading the source from disk for every task costs milliseconds."""
        if key not in self._hashes:
            self._hashes[key] = recipe.code_sha256()
        return self._hashes[key]

    def _answer(
        self,
        task: Task,
        started: float,
        status: PartialStatus,
        *,
        reason: str | None = None,
        table: Table | None = None,
        query_set_size: int | None = None,
        audit_atoms: Table | None = None,
    ) -> SignedPartial:
        partial = Partial(
            task_id=task.task_id,
            job_id=task.job_id,
            agency=self.settings.agency,
            code_sha256=task.code_sha256,
            status=status,
            reason=reason,
            table=table,
            min_cell=self.settings.min_cell,
            query_set_size=query_set_size,
            audit_atoms=audit_atoms,
            computed_at=time.time(),
            seconds=round(time.perf_counter() - started, 6),
        )
        return sign_partial(self.node_key, partial)


def _task_summary(task: Task) -> dict[str, Any]:
    """What the log keeps of a received task: ids, recipe, hash and the analyst's parameters."""
    return {
        "task_id": task.task_id,
        "job_id": task.job_id,
        "agency": task.agency,
        "dataset": task.dataset,
        "recipe": f"{task.recipe}@{task.version}",
        "code_sha256": task.code_sha256,
        "params_sha256": digest(task.params),
        "nonce": task.nonce,
        "expires_at": task.expires_at,
    }
