"""Jobs and their state machine: queued → running → combined → released; or failed / refused.

The database is the truth at every step, so a hub restart loses nothing: tasks not yet answered
are handed out again and the rest time out. Each step is one short write transaction (create;
deliver; accept a partial, settling the job when it is the last; time out), and each wakes the
long-polls that care about it through the notifier.

Nothing here renders HTTP: errors are raised as ``datalab.errors`` classes and the one handler
in ``app.py`` turns them into responses.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from datalab.canonical import canonical_bytes, digest
from datalab.errors import (
    BadRequest,
    Conflict,
    DatalabError,
    Forbidden,
    InvalidParameters,
    JobRefused,
    NotFound,
    Unauthorized,
)
from datalab.signing import BadSignature, SigningKey, verify_value
from datalab.wire import (
    CatalogueDataset,
    ErrorInfo,
    JobRequest,
    JobState,
    JobView,
    PartialStatus,
    Provenance,
    SignedPartial,
    Table,
    Task,
    TaskState,
    TaskView,
)
from lab_server import audit, budget
from lab_server.catalogue import load_catalogue
from lab_server.db import Database, Dataset, Job, TaskRow
from lab_server.notify import Notifier, job_key, node_key
from lab_server.permissions import Actor, Gate, Resource, decide
from lab_server.privacy import agency_layers
from lab_server.query_audit import check_and_remember, priors_for, query_shape
from lab_server.recipe_book import RecipeBook
from lab_server.released_models import resolve_model
from lab_server.settings import HubSettings
from recipes.contract import Combined, Recipe, Target
from recipes.federated import FlowerRecipe
from recipes.psi_contract import PsiRecipe
from recipes.release import QuerySet
from recipes.rules import BY_NAME, Rules, effective

if TYPE_CHECKING:
    from lab_server.training_runs import Trainer

log = logging.getLogger("datalab.hub.jobs")

#: disclosure control: ``apply_rules(combined, rules, query_set) -> Protected``.
Protector = Callable[[Combined, Rules, QuerySet], Any]

PENDING = (TaskState.ISSUED.value, TaskState.DELIVERED.value)
FINAL_JOB_STATES = tuple(s.value for s in JobState if s.final)


def default_protector() -> Protector:
    from recipes.release import apply_rules

    return apply_rules


class JobService:
    def __init__(
        self,
        settings: HubSettings,
        db: Database,
        book: RecipeBook,
        hub_key: SigningKey,
        notifier: Notifier,
        gate: Gate,
        protect: Protector | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._book = book
        self._hub_key = hub_key
        self._notifier = notifier
        self._gate = gate
        self._protect = protect or default_protector()
        #: runs training recipes as Flower runs (None: this hub cannot train).
        self.trainer: Trainer | None = None

    # ------------------------------------------------------------------ create

    def create(self, actor: Actor, request: JobRequest) -> JobView:
        """Validate, then write the job and its signed tasks in one transaction (all or nothing)."""
        self._gate.ensure_allowed(actor, "run-job")
        try:
            if isinstance(self._book.get(request.recipe, request.version), FlowerRecipe):
                self._trainer().ensure_available()
            request = resolve_model(
                self._book.get(request.recipe, request.version),
                request,
                lambda job_id: self.get(actor, job_id),
            )
            recipe, params, targets = self._plan(request)
            now = time.time()
            job = Job(
                id=uuid.uuid4().hex,
                analyst=actor.name,
                recipe=recipe.name,
                version=recipe.version,
                code_sha256=self._book.code_sha256(recipe),
                params=params,
                state=JobState.QUEUED.value,
                created_at=now,
                updated_at=now,
            )
            expires_at = now + self._settings.node_timeout_s
            epsilon = recipe.privacy_cost(params)
            # e.g. the privacy budget cannot pay: the transaction writes nothing
            view = self._write_job(actor, job, recipe, params, targets, epsilon, now, expires_at)
        except DatalabError as exc:
            with self._db.write() as session:
                audit.record(
                    session,
                    audit.JobRejected(
                        actor=actor.name, recipe=request.recipe, code=exc.code, message=exc.message
                    ),
                )
            raise
        if isinstance(recipe, FlowerRecipe):
            # no tasks: the nodes take part through their SuperNodes, gated by approval
            self._trainer().submit(view.job_id, recipe, params, targets)
            return view
        self._notifier.notify(*{node_key(t.agency) for t in targets})
        return view

    def _trainer(self) -> Trainer:
        if self.trainer is None:
            raise Conflict("this hub cannot run training recipes (no Flower SuperLink)")
        return self.trainer

    def _write_job(
        self,
        actor: Actor,
        job: Job,
        recipe: Recipe,
        params: dict[str, Any],
        targets: list[Target],
        epsilon: float | None,
        now: float,
        expires_at: float,
    ) -> JobView:
        """One transaction: the job, its budget debit (before anything runs), its tasks."""
        code_sha256 = job.code_sha256
        with self._db.write() as session:
            session.add(job)
            audit.record(
                session,
                audit.JobRequested(
                    actor=actor.name,
                    job_id=job.id,
                    recipe=recipe.name,
                    version=recipe.version,
                    code_sha256=code_sha256,
                    params=params,
                    agencies=sorted({t.agency for t in targets}),
                ),
            )
            if epsilon is not None:
                self._check_epsilon(session, epsilon, targets)
                scopes = budget.scopes_for(recipe, targets)
                budget.debit(session, actor.name, scopes, epsilon, job.id)
            catalogue = (
                {Target(agency=a, dataset=d.name): d for a, d in load_catalogue(session)}
                if epsilon is None and recipe.query_audited
                else {}
            )
            for target in [] if isinstance(recipe, FlowerRecipe) else targets:
                task = Task(
                    task_id=uuid.uuid4().hex,
                    job_id=job.id,
                    agency=target.agency,
                    dataset=target.dataset,
                    recipe=recipe.name,
                    version=recipe.version,
                    code_sha256=code_sha256,
                    params=params,
                    issued_at=now,
                    expires_at=expires_at,
                    nonce=secrets.token_hex(16),
                    audit=(
                        priors_for(
                            session,
                            actor.name,
                            target.agency,
                            target.dataset,
                            current=_shape(recipe, params, catalogue.get(target)),
                        )
                        if epsilon is None and recipe.query_audited
                        else None
                    ),
                    peers=[t.agency for t in targets] if isinstance(recipe, PsiRecipe) else [],
                )
                body = task.model_dump(mode="json")
                job.tasks.append(
                    TaskRow(
                        id=task.task_id,
                        agency=target.agency,
                        dataset=target.dataset,
                        state=TaskState.ISSUED.value,
                        task=body,
                        signature=self._hub_key.sign_value(body),
                        nonce=task.nonce,
                        issued_at=now,
                        expires_at=expires_at,
                    )
                )
                audit.record(
                    session,
                    audit.TaskIssued(
                        actor=audit.HUB,
                        job_id=job.id,
                        task_id=task.task_id,
                        agency=target.agency,
                        dataset=target.dataset,
                        expires_at=expires_at,
                    ),
                )
            return to_view(job)

    @staticmethod
    def _check_epsilon(session: Session, epsilon: float, targets: list[Target]) -> None:
        largest = float(BY_NAME["max_epsilon_per_query"].default)
        for layer in agency_layers(session, {t.agency for t in targets}):
            largest = min(largest, float(layer.get("max_epsilon_per_query", largest)))
        if epsilon > largest:
            raise InvalidParameters(
                f"parameter 'epsilon' must be ≤ {largest:g} for these agencies' data"
            )

    def _plan(self, request: JobRequest) -> tuple[Recipe, dict[str, Any], list[Target]]:
        recipe = self._book.get(request.recipe, request.version)
        with self._db.read() as session:
            catalogue = load_catalogue(session)
        params = recipe.validate(request.params, catalogue)
        try:
            canonical_bytes(params)
        except (TypeError, ValueError):
            raise InvalidParameters("parameters must be plain JSON values") from None
        if request.agencies is not None:
            known = {agency for agency, _ in catalogue}
            unknown = sorted(set(request.agencies) - known)
            if unknown:
                raise InvalidParameters(f"agencies: no node is registered for {unknown[0]!r}")
            catalogue = [(a, d) for a, d in catalogue if a in request.agencies]
        targets = list(dict.fromkeys(recipe.targets(params, catalogue)))
        if not targets:
            raise InvalidParameters(
                f"no dataset in the catalogue fits {recipe.key}; see the catalogue for what "
                "the registered nodes hold"
            )
        return recipe, params, targets

    # ------------------------------------------------------------------ read

    def get(self, actor: Actor, job_id: str) -> JobView:
        with self._db.read() as session:
            job = session.get(Job, job_id, options=[selectinload(Job.tasks)])
            if job is None:
                raise NotFound(f"no job {job_id}")
            view = to_view(job, with_result=True)
        self._gate.ensure_allowed(actor, "read-own-job", Resource(owner=view.analyst))
        return view

    def list(self, actor: Actor) -> list[JobView]:
        everyone = decide(actor, "read-any-job").allowed
        if not everyone:
            self._gate.ensure_allowed(actor, "read-own-job", Resource(owner=actor.name))
        stmt = select(Job).options(selectinload(Job.tasks)).order_by(Job.created_at)
        if not everyone:
            stmt = stmt.where(Job.analyst == actor.name)
        with self._db.read() as session:
            return [to_view(job) for job in session.execute(stmt).scalars()]

    # ------------------------------------------------------------------ answers

    def accept_partial(self, agency: str, node_public_key: str, signed: SignedPartial) -> None:
        """Store a node's signed answer (idempotent) and settle the job if it was the last."""
        partial = signed.partial
        if partial.agency != agency:
            raise Forbidden("a node may only answer for its own agency")
        body = partial.model_dump(mode="json")
        try:
            verify_value(node_public_key, body, signed.signature)
        except BadSignature:
            raise Unauthorized("the partial's signature does not verify") from None
        if partial.status is PartialStatus.OK and partial.table is None:
            raise BadRequest("an ok partial must carry a table")
        now = time.time()
        with self._db.write() as session:
            task = session.get(TaskRow, partial.task_id)
            if task is None:
                raise NotFound(f"no task {partial.task_id}")
            if task.agency != agency:
                raise Forbidden("that task is not this node's")
            if task.job_id != partial.job_id:
                raise BadRequest("the partial names another job than its task")
            if task.partial is not None:
                if digest(task.partial) == digest(body):
                    return  # the same answer again: already taken
                raise Conflict("this task was already answered differently")
            if task.state == TaskState.TIMED_OUT.value:
                raise Conflict("this task timed out before its answer arrived")
            if partial.code_sha256 != task.task["code_sha256"]:
                raise BadRequest(
                    "the partial was computed by different recipe code than the task's"
                )
            task.partial = body
            task.node_signature = signed.signature
            task.reason = partial.reason
            partial_sha256 = digest(body)
            if partial.status is PartialStatus.OK:
                task.state = TaskState.DONE.value
                event: audit.AuditEvent = audit.PartialReceived(
                    actor=agency,
                    job_id=task.job_id,
                    task_id=task.id,
                    partial_sha256=partial_sha256,
                    query_set_size=partial.query_set_size,
                )
            else:
                task.state = (
                    TaskState.REFUSED.value
                    if partial.status is PartialStatus.REFUSED
                    else TaskState.FAILED.value
                )
                event = audit.TaskRefused(
                    actor=agency,
                    job_id=task.job_id,
                    task_id=task.id,
                    status=partial.status.value,
                    reason=partial.reason or "no reason given",
                    partial_sha256=partial_sha256,
                )
            audit.record(session, event)
            job = task.job
            job.updated_at = now
            if job.state not in FINAL_JOB_STATES:
                self._settle(session, job, now)
            job_id = job.id
        self._notifier.notify(job_key(job_id))

    # ------------------------------------------------------------------ time

    def sweep_timeouts(self) -> int:
        """Time out unanswered tasks past their deadline; settle their jobs. Returns how many."""
        now = time.time()
        overdue = (
            select(TaskRow)
            .where(TaskRow.state.in_(PENDING), TaskRow.expires_at <= now)
            .order_by(TaskRow.job_id, TaskRow.agency)
        )
        with self._db.read() as session:
            if session.execute(overdue.with_only_columns(TaskRow.id).limit(1)).first() is None:
                return 0
        woken: set[str] = set()
        with self._db.write() as session:
            tasks = list(session.execute(overdue).scalars())
            for task in tasks:
                task.state = TaskState.TIMED_OUT.value
                allowed = task.expires_at - task.issued_at
                task.reason = f"no answer within {allowed:g} s"
                audit.record(
                    session,
                    audit.TaskTimedOut(
                        actor=audit.HUB,
                        job_id=task.job_id,
                        task_id=task.id,
                        agency=task.agency,
                        timeout_s=allowed,
                    ),
                )
            for job in {task.job.id: task.job for task in tasks}.values():
                if job.state not in FINAL_JOB_STATES:
                    job.updated_at = now
                    self._settle(session, job, now)
                woken.add(job_key(job.id))
        self._notifier.notify(*woken)
        return len(tasks)

    def requeue_unanswered(self) -> int:
        """At start: hand out again the tasks a previous hub delivered but got no answer to."""
        now = time.time()
        with self._db.write() as session:
            live_jobs = select(Job.id).where(Job.state.not_in(FINAL_JOB_STATES))
            result = session.execute(
                update(TaskRow)
                .where(
                    TaskRow.state == TaskState.DELIVERED.value,
                    TaskRow.expires_at > now,
                    TaskRow.job_id.in_(live_jobs),
                )
                .values(state=TaskState.ISSUED.value)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ settle

    def _settle(self, session: Session, job: Job, now: float) -> None:
        """Move ``job`` on once its tasks allow: refused, failed, released, or still waiting."""
        tasks = job.tasks
        refused = [t for t in tasks if t.state == TaskState.REFUSED.value]
        if refused:
            message = "; ".join(
                f"agency {t.agency} refused: {t.reason or 'no reason given'}" for t in refused
            )
            self._end(session, job, JobState.REFUSED, "job_refused", message, now)
            return
        failed = [t for t in tasks if t.state == TaskState.FAILED.value]
        if failed:
            message = "; ".join(
                f"node {t.agency} failed: {t.reason or 'no reason given'}" for t in failed
            )
            self._end(session, job, JobState.FAILED, "job_failed", message, now)
            return
        if any(t.state in PENDING for t in tasks):
            return
        try:
            recipe = self._book.get(job.recipe, job.version)
        except NotFound:
            recipe = None
        if recipe is None or self._book.code_sha256(recipe) != job.code_sha256:
            message = (
                f"recipe {job.recipe}@{job.version} changed or was removed since the job began"
            )
            self._end(session, job, JobState.FAILED, "job_failed", message, now)
            return
        done = [t for t in tasks if t.state == TaskState.DONE.value]
        timed_out = [t for t in tasks if t.state == TaskState.TIMED_OUT.value]
        if timed_out and not (recipe.manifest.disclosure.allow_missing_nodes and done):
            message = "; ".join(
                f"node {t.agency} did not answer within {t.expires_at - t.issued_at:g} s"
                for t in timed_out
            )
            self._end(session, job, JobState.FAILED, "job_failed", message, now)
            return
        self._release(session, job, recipe, done, sorted({t.agency for t in timed_out}), now)

    def _release(
        self,
        session: Session,
        job: Job,
        recipe: Recipe,
        done: Sequence[TaskRow],
        missing: list[str],
        now: float,
    ) -> None:
        try:
            tables = [Table.model_validate(t.partial["table"]) for t in done if t.partial]
            combined = recipe.combine(job.params, tables)
            job.state = JobState.COMBINED.value
            rules = self._rules(session, recipe, done)
            min_cell = rules.min_cell
            # a DP release may depend on the data only through its noise: no exact
            # query-set rule (noisy cells are still suppressed: post-processing)
            dp = recipe.privacy_cost(job.params) is not None
            protected = self._protect(combined, rules, None if dp else _query_set(session, done))
            if not dp and recipe.query_audited:
                check_and_remember(
                    session,
                    job,
                    recipe,
                    done,
                    protected.table,
                    combined.count_column,
                    int(rules["min_difference"]),
                    min_cell=rules.min_cell if rules["complementary"] else 0,
                )
        except DatalabError as exc:
            state = JobState.REFUSED if isinstance(exc, JobRefused) else JobState.FAILED
            self._end(session, job, state, exc.code, exc.message, now)
            return
        except Exception as exc:  # a recipe bug must fail the job, not leave it hanging
            log.error("combining job failed with %s", type(exc).__name__)
            message = "the hub could not combine the partial results"
            self._end(session, job, JobState.FAILED, "job_failed", message, now)
            return
        result = protected.table.model_dump(mode="json")
        provenance = Provenance(
            job_id=job.id,
            recipe=job.recipe,
            version=job.version,
            code_sha256=job.code_sha256,
            params=job.params,
            agencies=sorted({t.agency for t in done}),
            missing_agencies=missing,
            min_cell=min_cell,
            suppressed_cells=protected.suppressed_cells,
            suppression=list(protected.notes),
            released_at=now,
            result_sha256=digest(result),
            rules=dict(rules.values),
            epsilon=recipe.privacy_cost(job.params),
        )
        job.result = result
        job.provenance = provenance.model_dump(mode="json")
        job.state = JobState.RELEASED.value
        job.updated_at = now
        audit.record(
            session,
            audit.ResultReleased(
                actor=audit.HUB,
                job_id=job.id,
                result_sha256=provenance.result_sha256,
                min_cell=min_cell,
                suppressed_cells=protected.suppressed_cells,
                agencies=provenance.agencies,
                missing_agencies=missing,
            ),
        )

    @staticmethod
    def _rules(session: Session, recipe: Recipe, done: Sequence[TaskRow]) -> Rules:
        """The recipe's policy tightened by each answering agency's settings and node minimum."""
        nodes = [{"min_cell": int(t.partial["min_cell"])} for t in done if t.partial]
        agencies = agency_layers(session, {t.agency for t in done})
        return effective(recipe.manifest.disclosure, [*nodes, *agencies])

    def _end(
        self, session: Session, job: Job, state: JobState, code: str, message: str, now: float
    ) -> None:
        job.state = state.value
        job.error_code = code
        job.error_message = message
        job.updated_at = now
        if state is JobState.FAILED and not any(t.state == TaskState.DONE.value for t in job.tasks):
            budget.refund(session, job.id)  # no node returned a result: nothing was learned
        event: audit.AuditEvent
        if state is JobState.REFUSED:
            event = audit.JobRefused(actor=audit.HUB, job_id=job.id, message=message)
        else:
            event = audit.JobFailed(actor=audit.HUB, job_id=job.id, code=code, message=message)
        audit.record(session, event)


def _query_set(session: Session, done: Sequence[TaskRow]) -> QuerySet:
    """Rows the job touched (the nodes' query-set sizes) and rows its datasets hold (public)."""
    sizes = [t.partial.get("query_set_size") for t in done if t.partial]
    size = None if any(s is None for s in sizes) else sum(int(s) for s in sizes)
    population = 0
    for t in done:
        rows = session.execute(
            select(Dataset.rows).where(Dataset.agency == t.agency, Dataset.name == t.dataset)
        ).scalar_one_or_none()
        population += int(rows or 0)
    return QuerySet(size=size, population=population)


def to_view(job: Job, *, with_result: bool = False) -> JobView:
    return JobView(
        job_id=job.id,
        recipe=job.recipe,
        version=job.version,
        code_sha256=job.code_sha256,
        params=job.params,
        analyst=job.analyst,
        state=JobState(job.state),
        created_at=job.created_at,
        updated_at=job.updated_at,
        tasks=[
            TaskView(agency=t.agency, dataset=t.dataset, state=TaskState(t.state), reason=t.reason)
            for t in job.tasks
        ],
        error=(
            ErrorInfo(code=job.error_code, message=job.error_message or "")
            if job.error_code
            else None
        ),
        result=Table.model_validate(job.result) if with_result and job.result else None,
        provenance=Provenance.model_validate(job.provenance) if job.provenance else None,
    )


def fingerprint(view: JobView) -> tuple[str, ...]:
    """What a job long-poll watches: the job's state, each task's state, a match's progress."""
    progress = (f"progress:{view.progress.done}/{view.progress.total}",) if view.progress else ()
    return (
        view.state.value,
        *(f"{t.agency}/{t.dataset}:{t.state.value}" for t in view.tasks),
        *progress,
    )


def _shape(recipe: Recipe, params: dict[str, Any], dataset: CatalogueDataset | None) -> str | None:
    """The query shape of this job on one dataset (None if the catalogue lacks it)."""
    return None if dataset is None else query_shape(recipe.plan(params, dataset))
