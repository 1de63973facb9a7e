"""Nodes: enrolment with a pinned key, signed-request lookup, and task delivery.

A node proves itself twice at registration — the hub's enrolment token (it was let in) and a
signature by the key it registers (it holds that key). From then on that key is pinned: a second
registration with another key is refused until an operator removes the node, so a leaked
enrolment token cannot be used to take over an agency's tasks.
"""

from __future__ import annotations

import hmac
import time

from sqlalchemy import and_, select, update

from datalab.canonical import sha256_hex
from datalab.errors import Conflict, InvalidParameters, NotFound, Unauthorized
from datalab.signing import BadSignature, SigningKey, verify_value
from datalab.wire import RegistrationAccepted, SignedRegistration, SignedTask, Task, TaskState
from lab_server import audit
from lab_server.catalogue import replace_datasets
from lab_server.db import Database, Job, Node, TaskRow
from lab_server.notify import Notifier, job_key
from lab_server.settings import HubSettings
from lab_server.users import AGENCY_PATTERN

#: how often a polling node's last-seen time is written (it is refreshed on every poll).
LAST_SEEN_RESOLUTION_S = 1.0
_FINAL_JOB_STATES = ("released", "failed", "refused")


def key_fingerprint(public_key: str) -> str:
    """A short, stable name for a public key (what operators compare)."""
    return sha256_hex(bytes.fromhex(public_key))[:16]


def registration_signature_ok(signed: SignedRegistration) -> bool:
    """Whether the registration is signed by the key it registers.

    The node signs the registration's JSON; ``ColumnSpec`` has an alias (``class``), so both the
    aliased and the field-named dump are accepted — either way the signed content is the same.
    """
    reg = signed.registration
    for by_alias in (False, True):
        try:
            verify_value(
                reg.public_key, reg.model_dump(mode="json", by_alias=by_alias), signed.signature
            )
        except BadSignature:
            continue
        return True
    return False


class NodeService:
    def __init__(
        self, settings: HubSettings, db: Database, hub_key: SigningKey, notifier: Notifier
    ) -> None:
        self._settings = settings
        self._db = db
        self._hub_key = hub_key
        self._notifier = notifier
        # Pinned keys change only through this service (register/remove), so an in-process
        # copy saves a database read on every signed node request.
        self._keys: dict[str, str] = {}

    def register(
        self, enrolment_token: str | None, signed: SignedRegistration
    ) -> RegistrationAccepted:
        reg = signed.registration
        if not AGENCY_PATTERN.match(reg.agency):
            raise InvalidParameters(
                "agency must be 1-64 characters: letters, digits, '_', '.', '-'"
            )
        if enrolment_token is None or not hmac.compare_digest(
            enrolment_token.encode(), self._settings.enrolment_token.encode()
        ):
            self._refuse(reg.agency, "bad enrolment token")
            raise Unauthorized("registration needs the hub's enrolment token")
        if not registration_signature_ok(signed):
            self._refuse(reg.agency, "registration not signed by the key it registers")
            raise Unauthorized("the registration is not signed by the key it registers")
        if self.public_key(reg.agency) not in (None, reg.public_key):
            self._refuse(reg.agency, "a different key is pinned")
            raise Conflict(
                f"agency {reg.agency} is registered with another key; an operator must remove "
                "the node before it can enrol with a new one"
            )
        with self._db.write() as session:
            node = session.get(Node, reg.agency)
            rereg = node is not None
            if node is not None and node.public_key != reg.public_key:
                # Lost a race with another registration: the pinned key wins.
                raise Conflict(f"agency {reg.agency} is registered with another key")
            if node is None:
                node = Node(agency=reg.agency, public_key=reg.public_key)
                session.add(node)
            node.version = reg.version
            node.min_cell = reg.min_cell
            node.last_seen = time.time()
            replace_datasets(session, node, reg.datasets)
            audit.record(
                session,
                audit.NodeRegistered(
                    actor=reg.agency,
                    agency=reg.agency,
                    version=reg.version,
                    key_sha256=key_fingerprint(reg.public_key),
                    min_cell=reg.min_cell,
                    datasets=sorted(d.name for d in reg.datasets),
                    reregistration=rereg,
                ),
            )
        return RegistrationAccepted(agency=reg.agency, hub_public_key=self._hub_key.public_key)

    def _refuse(self, agency: str, reason: str) -> None:
        with self._db.write() as session:
            audit.record(
                session, audit.RegistrationRefused(actor=agency, agency=agency, reason=reason)
            )

    def public_key(self, agency: str) -> str | None:
        cached = self._keys.get(agency)
        if cached is not None:
            return cached
        with self._db.read() as session:
            key = session.execute(
                select(Node.public_key).where(Node.agency == agency)
            ).scalar_one_or_none()
        if key is not None:
            self._keys[agency] = key
        return key

    def remove(self, by: str, agency: str) -> None:
        with self._db.write() as session:
            node = session.get(Node, agency)
            if node is None:
                raise NotFound(f"no node for agency {agency!r}")
            session.delete(node)
            audit.record(session, audit.NodeRemoved(actor=by, agency=agency))
        self._keys.pop(agency, None)

    def list(self) -> list[dict[str, object]]:
        with self._db.read() as session:
            nodes = session.execute(select(Node).order_by(Node.agency)).scalars()
            return [
                {
                    "agency": n.agency,
                    "version": n.version,
                    "min_cell": n.min_cell,
                    "key_fingerprint": key_fingerprint(n.public_key),
                    "registered_at": n.registered_at,
                    "last_seen": n.last_seen,
                }
                for n in nodes
            ]

    def take_tasks(self, agency: str) -> list[SignedTask]:
        """Tasks waiting for ``agency`` (marked delivered), and refresh its last-seen time.

        Only ``issued`` tasks are handed out: a node refuses a nonce it has seen, so handing the
        same task twice would turn work in progress into a refusal. A restarted hub puts
        unanswered ``delivered`` tasks back to ``issued`` (``requeue_unanswered``).
        """
        now = time.time()
        with self._db.read() as session:
            waiting = session.execute(
                select(TaskRow.id)
                .join(Job, Job.id == TaskRow.job_id)
                .where(
                    TaskRow.agency == agency,
                    TaskRow.state == TaskState.ISSUED.value,
                    TaskRow.expires_at > now,
                    Job.state.not_in(_FINAL_JOB_STATES),
                )
                .limit(1)
            ).first()
            seen = session.execute(select(Node.last_seen).where(Node.agency == agency)).first()
        stale = seen is None or seen[0] is None or now - seen[0] > LAST_SEEN_RESOLUTION_S
        if waiting is None and not stale:
            return []
        out: list[SignedTask] = []
        woken: set[str] = set()
        with self._db.write() as session:
            session.execute(update(Node).where(Node.agency == agency).values(last_seen=now))
            if waiting is not None:
                rows = session.execute(
                    select(TaskRow, Job)
                    .join(Job, Job.id == TaskRow.job_id)
                    .where(
                        and_(
                            TaskRow.agency == agency,
                            TaskRow.state == TaskState.ISSUED.value,
                            TaskRow.expires_at > now,
                            Job.state.not_in(_FINAL_JOB_STATES),
                        )
                    )
                    .order_by(TaskRow.issued_at)
                ).all()
                for task, job in rows:
                    task.state = TaskState.DELIVERED.value
                    if job.state == "queued":
                        job.state = "running"
                    job.updated_at = now
                    audit.record(
                        session,
                        audit.TaskDelivered(actor=agency, job_id=job.id, task_id=task.id),
                    )
                    out.append(
                        SignedTask(task=Task.model_validate(task.task), signature=task.signature)
                    )
                    woken.add(job_key(job.id))
        if woken:
            self._notifier.notify(*woken)
        return out
