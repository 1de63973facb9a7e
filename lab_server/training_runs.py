"""Training jobs as Flower runs: submitted through the hub's SuperLink, followed to a model.

``Trainer`` turns a training job into a Flower run: it submits the recipe's app through the
SuperLink's Control API (the ``flwr`` CLI, JSON output; ``superlink.py``), follows the run
through the one file the ServerApp writes (one JSON line per secure round: aggregate
coefficients and metrics, never an update) and Flower's run status, and moves the job on:
running → released with the model, or failed. It records refusals that nodes' gates report,
since Flower itself only sees a node that does not answer. ``FlowerRun`` is the hub's own
record of each run, beside its job.

What the hub holds of a run is therefore: the aggregate per round, the final model, the run's
status — and SuperLink's own state, where SecAgg+ leaves only masked vectors and encrypted key
shares (``tests/attacks/test_federated_attacks.py`` checks that no node's update is there).
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from datalab.canonical import digest
from datalab.errors import Conflict, NotFound
from datalab.flower_runtime import flower_env
from datalab.wire import (
    FlowerRefusal,
    JobState,
    Provenance,
    Table,
    TrainingRound,
    TrainingView,
)
from lab_server import audit
from lab_server.catalogue import load_catalogue
from lab_server.db import Base, Database, Job
from lab_server.notify import Notifier, job_key
from lab_server.settings import HubSettings
from lab_server.superlink import LINK, SuperLink
from recipes.contract import Target
from recipes.federated import FlowerRecipe

log = logging.getLogger("datalab.hub.flower")

#: how often the follower reads the runs' result files, and asks Flower for run status.
FOLLOW_INTERVAL_S = 0.5
STATUS_INTERVAL_S = 5.0
#: SecAgg+ stages per round (setup, share keys, collect masked vectors, unmask).
STAGES = 4


class FlowerRun(Base):
    """A training job's Flower run: the hub's own record beside the job."""

    __tablename__ = "flower_runs"

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id"), primary_key=True)
    run_id: Mapped[str | None] = mapped_column(String(32))
    fab_sha256: Mapped[str] = mapped_column(String(64))
    #: submitting → running → done | failed
    state: Mapped[str] = mapped_column(String(16))
    rounds_planned: Mapped[int] = mapped_column(Integer)
    agencies: Mapped[list[str]] = mapped_column(JSON)
    rounds: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    refusals: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    result_path: Mapped[str] = mapped_column(String(512))
    deadline: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)


class Trainer:
    """Submits training jobs as Flower runs and follows them to a released model."""

    def __init__(
        self, settings: HubSettings, db: Database, notifier: Notifier, link: SuperLink | None
    ) -> None:
        self.settings = settings
        self.db = db
        self.notifier = notifier
        self.link = link
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_status = 0.0

    # -- lifecycle

    def start(self) -> None:
        self._fail_orphans()
        if self.link is None:
            return  # no SuperLink: no run can start, nothing to follow
        self.link.start()
        self._thread = threading.Thread(target=self._follow, name="flower-runs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.link is not None:
            self.link.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def ensure_available(self) -> None:
        if self.link is None:
            raise Conflict(
                "this hub runs no Flower SuperLink, so it cannot train: start it with "
                "DATALAB_HUB_FLOWER=true (datalab server --flower)"
            )

    # -- submit

    def submit(
        self, job_id: str, recipe: FlowerRecipe, params: dict[str, Any], targets: list[Target]
    ) -> None:
        """Record the run and start it in the background (``flwr run`` takes a second)."""
        assert self.link is not None
        now = time.time()
        rounds = int(params.get("rounds", 1))
        stage_s = self.settings.flower_round_timeout_s
        result_path = self.link.dir / "results" / f"{job_id}.jsonl"
        with self.db.write() as session:
            session.add(
                FlowerRun(
                    job_id=job_id,
                    run_id=None,
                    fab_sha256=recipe.code_sha256(),
                    state="submitting",
                    rounds_planned=rounds,
                    agencies=sorted({t.agency for t in targets}),
                    rounds=[],
                    refusals=[],
                    result_path=str(result_path),
                    # every stage of every round (and the evaluation round) may wait it out
                    deadline=now + 60.0 + (rounds + 1) * STAGES * stage_s * 1.5,
                    created_at=now,
                )
            )
        threading.Thread(
            target=self._start_run,
            args=(job_id, recipe, params, targets, result_path),
            name=f"flower-submit-{job_id[:8]}",
            daemon=True,
        ).start()

    def _start_run(
        self,
        job_id: str,
        recipe: FlowerRecipe,
        params: dict[str, Any],
        targets: list[Target],
        result_path: Path,
    ) -> None:
        assert self.link is not None
        try:
            with self.db.read() as session:
                catalogue = {(a, d.name): d for a, d in load_catalogue(session)}
            pairs = [(t, catalogue[(t.agency, t.dataset)]) for t in targets]
            config = recipe.run_config(params, pairs)
            config.update(
                {
                    "job-id": job_id,
                    "result-path": str(result_path),
                    "round-timeout": float(self.settings.flower_round_timeout_s),
                }
            )
            config_file = result_path.with_suffix(".run-config.toml")
            config_file.parent.mkdir(parents=True, exist_ok=True)
            config_file.write_text(_toml(config), encoding="utf-8")
            answer = self.link.cli(
                "run", str(recipe.app_dir), LINK, "--run-config", str(config_file)
            )
            run_id = str(answer["run-id"])
        except Exception as exc:
            log.error("starting the Flower run of job %s failed: %s", job_id, exc)
            self._fail(job_id, "the hub could not start the Flower run")
            return
        with self.db.write() as session:
            run = session.get(FlowerRun, job_id)
            job = session.get(Job, job_id)
            if run is None or job is None:
                return
            run.run_id = run_id
            run.state = "running"
            job.state = JobState.RUNNING.value
            job.updated_at = time.time()
            audit.record(
                session,
                audit.TrainingStarted(
                    actor=audit.HUB,
                    job_id=job_id,
                    run_id=run_id,
                    fab_sha256=run.fab_sha256,
                    agencies=run.agencies,
                    rounds=run.rounds_planned,
                ),
            )
        self.notifier.notify(job_key(job_id))

    # -- follow

    def _follow(self) -> None:
        while not self._stop.wait(FOLLOW_INTERVAL_S):
            try:
                self.follow_once()
            except Exception as exc:  # keep following: one bad pass must not stop the rest
                log.error("following Flower runs failed: %s", exc, exc_info=exc)

    def follow_once(self) -> None:
        with self.db.read() as session:
            runs = [
                (r.job_id, r.run_id, r.result_path, len(r.rounds), r.deadline)
                for r in session.execute(
                    select(FlowerRun).where(FlowerRun.state == "running")
                ).scalars()
            ]
        check_status = time.monotonic() - self._last_status >= STATUS_INTERVAL_S
        if check_status:
            self._last_status = time.monotonic()
        for job_id, run_id, result_path, seen, deadline in runs:
            records = _read_records(Path(result_path))
            rounds = [r for r in records if "round" in r]
            final = next((r for r in records if r.get("done")), None)
            if len(rounds) > seen:
                self._add_rounds(job_id, rounds[seen:])
            if final is not None:
                self._keep_log(run_id, Path(result_path))
                self._release(job_id, final)
            elif time.time() > deadline:
                self._stop_run(run_id)
                self._fail(job_id, "the training run did not finish in time")
            elif check_status and run_id:
                status = self._status(run_id)
                if status.startswith("finished") and not status.endswith("completed"):
                    self._fail(job_id, f"the Flower run ended as {status}")

    def _keep_log(self, run_id: str | None, result_path: Path) -> None:
        """Keep the ServerApp's log beside its record (for the hub's operator: aggregates and
        Flower's own messages only — the ServerApp never sees a node's update)."""
        if self.link is None or not run_id:
            return
        try:
            done = subprocess.run(
                [str(self.link.bin / "flwr"), "log", run_id, LINK, "--show"],
                capture_output=True,
                text=True,
                env=flower_env(self.link.bin, self.link.home),
                timeout=30,
                check=False,
            )
            result_path.with_suffix(".log").write_text(done.stdout, encoding="utf-8")
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("could not keep the log of run %s: %s", run_id, exc)

    def _status(self, run_id: str) -> str:
        assert self.link is not None
        try:
            answer = self.link.cli("list", LINK, "--run-id", run_id, timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log.warning("could not read the status of run %s: %s", run_id, exc)
            return "unknown"
        runs = answer.get("runs") or []
        return str(runs[0].get("status", "unknown")) if runs else "unknown"

    def _stop_run(self, run_id: str | None) -> None:
        if self.link is not None and run_id:
            try:
                self.link.cli("stop", run_id, LINK, timeout=30)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                log.warning("could not stop run %s: %s", run_id, exc)

    def _add_rounds(self, job_id: str, records: Sequence[dict[str, Any]]) -> None:
        with self.db.write() as session:
            run = session.get(FlowerRun, job_id)
            if run is None or run.state != "running":
                return
            added = [_round(r).model_dump(mode="json") for r in records]
            run.rounds = [*run.rounds, *added]
            for r in added:
                audit.record(
                    session,
                    audit.TrainingRoundDone(
                        actor=audit.HUB,
                        job_id=job_id,
                        round=r["round"],
                        nodes=r["nodes"],
                        failures=r["failures"],
                    ),
                )
            job = session.get(Job, job_id)
            if job is not None:
                job.updated_at = time.time()
        self.notifier.notify(job_key(job_id))

    def _release(self, job_id: str, final: dict[str, Any]) -> None:
        now = time.time()
        with self.db.write() as session:
            run = session.get(FlowerRun, job_id)
            job = session.get(Job, job_id)
            if run is None or job is None or run.state != "running":
                return
            trained = [r for r in run.rounds if not r["evaluation_only"] and r["nodes"] > 0]
            if not trained:
                run.state = "failed"
                _end(session, job, "no training round completed", now)
            else:
                terms = ["intercept", *job.params["features"]]
                values = [float(final["intercept"]), *map(float, final["coefficients"])]
                result = Table(
                    columns=["term", "coefficient"],
                    rows=[list(p) for p in zip(terms, values, strict=True)],
                ).model_dump(mode="json")
                refused = sorted({r["agency"] for r in run.refusals})
                provenance = Provenance(
                    job_id=job.id,
                    recipe=job.recipe,
                    version=job.version,
                    code_sha256=job.code_sha256,
                    params=job.params,
                    agencies=[a for a in run.agencies if a not in refused],
                    missing_agencies=refused,
                    min_cell=0,
                    suppressed_cells=0,
                    suppression=[],
                    released_at=now,
                    result_sha256=digest(result),
                    epsilon=_epsilon(job.params),
                    run_id=run.run_id,
                    rounds=[TrainingRound.model_validate(r) for r in run.rounds],
                )
                job.result = result
                job.provenance = provenance.model_dump(mode="json")
                job.state = JobState.RELEASED.value
                job.updated_at = now
                run.state = "done"
                audit.record(
                    session,
                    audit.ModelReleased(
                        actor=audit.HUB,
                        job_id=job.id,
                        result_sha256=provenance.result_sha256,
                        fab_sha256=run.fab_sha256,
                        rounds=len(trained),
                        agencies=provenance.agencies,
                        epsilon=provenance.epsilon,
                    ),
                )
        self.notifier.notify(job_key(job_id))

    def _fail(self, job_id: str, message: str) -> None:
        with self.db.write() as session:
            run = session.get(FlowerRun, job_id)
            job = session.get(Job, job_id)
            if run is not None:
                run.state = "failed"
            if job is not None and not JobState(job.state).final:
                _end(session, job, message, time.time())
        self.notifier.notify(job_key(job_id))

    def _fail_orphans(self) -> None:
        """At start: runs a previous hub was following died with its SuperLink's ServerApp."""
        with self.db.read() as session:
            orphans = list(
                session.execute(
                    select(FlowerRun.job_id).where(FlowerRun.state.in_(("submitting", "running")))
                ).scalars()
            )
        for job_id in orphans:
            self._fail(job_id, "the hub restarted while the job was training")

    # -- refusals and views

    def record_refusal(self, agency: str, refusal: FlowerRefusal) -> None:
        """A node's gate refused an app: into the audit log (and the job's record, if known)."""
        with self.db.write() as session:
            run = session.execute(
                select(FlowerRun).where(FlowerRun.run_id == refusal.run_id)
            ).scalar_one_or_none()
            audit.record(
                session,
                audit.FlowerAppRefused(
                    actor=agency,
                    agency=agency,
                    run_id=refusal.run_id,
                    fab_sha256=refusal.fab_sha256,
                    job_id=run.job_id if run is not None else None,
                    reason=refusal.reason,
                ),
            )
            if run is not None:
                entry = {"agency": agency, **refusal.model_dump(mode="json")}
                run.refusals = [*run.refusals, entry]
                job_id = run.job_id
            else:
                job_id = None
        if job_id:
            self.notifier.notify(job_key(job_id))

    def view(self, job_id: str, state: JobState) -> TrainingView:
        with self.db.read() as session:
            run = session.get(FlowerRun, job_id)
            if run is None:
                raise NotFound(f"job {job_id} is not a training job")
            return TrainingView(
                job_id=job_id,
                state=state,
                run_id=run.run_id,
                fab_sha256=run.fab_sha256,
                rounds_planned=run.rounds_planned,
                rounds=[TrainingRound.model_validate(r) for r in run.rounds],
                refusals=list(run.refusals),
            )


def _end(session: Any, job: Job, message: str, now: float) -> None:
    job.state = JobState.FAILED.value
    job.error_code = "job_failed"
    job.error_message = message
    job.updated_at = now
    audit.record(
        session, audit.JobFailed(actor=audit.HUB, job_id=job.id, code="job_failed", message=message)
    )


def _epsilon(params: dict[str, Any]) -> float | None:
    """The epsilon the job's parameters asked for (and the budget was debited at creation)."""
    value = params.get("epsilon")
    return None if value is None else float(value)


def _round(record: dict[str, Any]) -> TrainingRound:
    return TrainingRound(
        round=int(record["round"]),
        evaluation_only=bool(record.get("evaluation_only", False)),
        nodes=int(record.get("nodes", 0)),
        failures=int(record.get("failures", 0)),
        accuracy=float(record.get("accuracy", 0.0)),
        loss=float(record.get("loss", 0.0)),
        seconds=float(record.get("seconds", 0.0)),
    )


def _read_records(path: Path) -> list[dict[str, Any]]:
    """The ServerApp's complete lines so far (a line being written is left for next time)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _toml(values: dict[str, Any]) -> str:
    """A flat TOML table of run-config overrides (strings, numbers, booleans)."""
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = repr(value)
        else:
            text = json.dumps(str(value))
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"
