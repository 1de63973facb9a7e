"""The PSI relay: carries openmined-psi messages between the two tasks of a matching job.

Nodes connect only outbound, so the two parties of a match cannot talk directly; the hub passes
their messages on. What it passes are blinded curve points and the answering node's setup
(``datalab.wire.PsiMessage``): no identifier, and nothing the hub can unblind. The relay keeps
them in memory, per receiving task, only while the job is live — they are dropped as soon as the
job ends (``purge_finished``, run by the hub's sweeper) and never written to the database or a
log; what IS written then is one audit entry per job (``psi_relayed``): how many messages and
bytes each agency sent, never their contents. A hub restart loses the messages; the job's tasks
then time out, which is the safe outcome.

A message is accepted only from a signed node, for a task of its own agency, in a live job of a
matching recipe; it is delivered to the other task of a two-party job, or — in a job with
several answering agencies — to the task of the agency it names (``to``), which must be one of
the parties the hub listed in the sender's signed task (``Task.peers``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy.orm import selectinload

from datalab.errors import BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge
from datalab.wire import PsiMessage, PsiProgress
from lab_server import audit
from lab_server.db import Database, Job, TaskRow
from lab_server.notify import Notifier
from lab_server.recipe_book import RecipeBook
from recipes.psi_contract import PsiRecipe

_FINAL = ("released", "failed", "refused")
#: the most bytes of messages held for one job at a time (a client request of 1M items is
#: ~47 MB in base64; this bounds memory against a misbehaving node).
MAX_JOB_BYTES = 512 * 1024 * 1024


def psi_key(task_id: str) -> str:
    return f"psi:{task_id}"


@dataclass
class _Route:
    job_id: str
    peer_task: str


@dataclass
class _JobBox:
    bytes: int = 0
    seq: int = 0
    inbox: dict[str, list[PsiMessage]] = field(default_factory=dict)
    #: per sending agency: [messages, bytes] relayed (for the audit entry at the job's end)
    sent: dict[str, list[int]] = field(default_factory=dict)


class PsiRelay:
    def __init__(self, db: Database, book: RecipeBook, notifier: Notifier) -> None:
        self._db = db
        self._book = book
        self._notifier = notifier
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}
        self._jobs: dict[str, _JobBox] = {}
        self._progress: dict[str, PsiProgress] = {}

    def _route(self, agency: str, task_id: str, to: str | None) -> _Route:
        """Where a task's messages go (to agency ``to``, or the one other task of a two-party
        job); checks the task is the caller's, in a live PSI job."""
        with self._db.read() as session:
            task = session.get(TaskRow, task_id)
            if task is None:
                raise NotFound(f"no task {task_id}")
            if task.agency != agency:
                raise Forbidden("that task is not this node's")
            job = session.get(Job, task.job_id, options=[selectinload(Job.tasks)])
            assert job is not None
            if job.state in _FINAL:
                raise Conflict(f"job {job.id} has ended; its PSI messages are gone")
            try:
                recipe = self._book.get(job.recipe, job.version)
            except NotFound:
                recipe = None
            if not isinstance(recipe, PsiRecipe) or len(job.tasks) < 2:
                raise BadRequest("only the tasks of a matching job exchange PSI messages")
            if to is None:  # reading its own mailbox: no receiver to find
                return _Route(job_id=job.id, peer_task="")
            others = [t for t in job.tasks if t.id != task_id]
            if to:
                # only to an agency the hub named in this task's signed peers
                peers = task.task.get("peers", [])
                if to not in peers or to == agency:
                    raise BadRequest(f"agency {to!r} is not another party of this matching job")
                if agency != peers[0] and to != peers[0]:
                    raise Forbidden("an answering agency sends only to the asking agency")
                others = [t for t in others if t.agency == to]
            if len(others) != 1:
                raise BadRequest("name the receiving agency (to): this job has several parties")
            return _Route(job_id=job.id, peer_task=others[0].id)

    def _live_route(self, agency: str, task_id: str, to: str | None) -> _Route:
        """Checked against the database on every call (one small read per message): a cached
        answer would skip the ownership check, or accept messages after the job ended."""
        route = self._route(agency, task_id, to)
        with self._lock:
            self._routes[task_id] = route
            self._jobs.setdefault(route.job_id, _JobBox())
        return route

    def post(self, agency: str, task_id: str, message: PsiMessage) -> int:
        route = self._live_route(agency, task_id, message.to)
        size = len(message.body) + len(message.digests)
        with self._lock:
            box = self._jobs.get(route.job_id)
            if box is None:
                raise Conflict(f"job {route.job_id} has ended; its PSI messages are gone")
            if box.bytes + size > MAX_JOB_BYTES:
                raise PayloadTooLarge("this job's PSI messages exceed the relay's limit")
            box.seq += 1
            box.bytes += size
            stored = message.model_copy(update={"seq": box.seq, "sender": agency})
            box.inbox.setdefault(route.peer_task, []).append(stored)
            tally = box.sent.setdefault(agency, [0, 0])
            tally[0] += 1
            tally[1] += size
        self._notifier.notify(psi_key(route.peer_task))
        return stored.seq

    def report(self, agency: str, task_id: str, progress: PsiProgress) -> str:
        """Keep the asking task's progress on its job (counts only, in memory, until the job
        ends); returns the job id so its watchers can be woken."""
        route = self._live_route(agency, task_id, None)
        with self._db.read() as session:
            task = session.get(TaskRow, task_id)
            peers = task.task.get("peers", []) if task is not None else []
        if peers and peers[0] != agency:
            raise Forbidden("only the asking node of a matching job reports its progress")
        with self._lock:
            self._progress[route.job_id] = progress
        return route.job_id

    def progress(self, job_id: str) -> PsiProgress | None:
        with self._lock:
            return self._progress.get(job_id)

    def take(self, agency: str, task_id: str, after: int) -> list[PsiMessage]:
        """Messages for ``task_id`` with ``seq > after``; delivered ones are dropped (the node
        acknowledges by asking for later ones), so memory holds only what is in flight."""
        route = self._live_route(agency, task_id, None)
        with self._lock:
            box = self._jobs.get(route.job_id)
            if box is None:
                return []
            inbox = box.inbox.get(task_id, [])
            kept = [m for m in inbox if m.seq > after]
            box.bytes -= sum(len(m.body) + len(m.digests) for m in inbox if m.seq <= after)
            box.inbox[task_id] = kept
            return list(kept)

    def purge_finished(self) -> int:
        """Drop the messages of every job that has ended; how many jobs were dropped."""
        with self._lock:
            job_ids = list(self._jobs)
        if not job_ids:
            return 0
        with self._db.read() as session:
            ended = [
                j for j in job_ids if (job := session.get(Job, j)) is None or job.state in _FINAL
            ]
        relayed: list[audit.PsiRelayed] = []
        with self._lock:
            for job_id in ended:
                box = self._jobs.pop(job_id, None)
                self._progress.pop(job_id, None)
                if box is not None and box.sent:
                    relayed.append(
                        audit.PsiRelayed(
                            actor=audit.HUB,
                            job_id=job_id,
                            messages=sum(m for m, _ in box.sent.values()),
                            bytes=sum(b for _, b in box.sent.values()),
                            by_sender={
                                a: {"messages": m, "bytes": b}
                                for a, (m, b) in sorted(box.sent.items())
                            },
                        )
                    )
            gone = [t for t, r in self._routes.items() if r.job_id in ended]
            for task_id in gone:
                del self._routes[task_id]
        if relayed:
            with self._db.write() as session:
                for entry in relayed:
                    audit.record(session, entry)
        # a node still waiting on an ended job's mailbox hears at once that it is gone
        self._notifier.notify(*(psi_key(t) for t in gone))
        return len(ended)

    def held(self) -> int:
        """Messages held now (for tests and the operator)."""
        with self._lock:
            return sum(len(m) for box in self._jobs.values() for m in box.inbox.values())
