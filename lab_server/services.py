"""The hub's parts, built once per app from settings: database, key, recipes, services.

A plain record of collaborators, not an object with behaviour: each service keeps its own
logic, and routes reach them through the typed dependencies in ``deps.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datalab.signing import SigningKey, load_or_create_key
from lab_server.approval_requests import ApprovalService
from lab_server.checkpoints import Transparency
from lab_server.db import Database
from lab_server.jobs import JobService, Protector
from lab_server.nodes import NodeService
from lab_server.notify import Notifier
from lab_server.permissions import Actor, Gate
from lab_server.privacy import PrivacyService
from lab_server.psi_relay import PsiRelay
from lab_server.recipe_book import RecipeBook
from lab_server.settings import HubSettings
from lab_server.superlink import SuperLink
from lab_server.training_runs import Trainer
from recipes.registry import RecipeRegistry, default_registry


@dataclass
class Services:
    settings: HubSettings
    db: Database
    hub_key: SigningKey
    book: RecipeBook
    notifier: Notifier
    gate: Gate
    nodes: NodeService
    jobs: JobService
    privacy: PrivacyService
    approvals: ApprovalService
    transparency: Transparency
    psi: PsiRelay
    #: federated training: the SuperLink (if enabled) and the runs of training jobs.
    trainer: Trainer
    #: sha256(token) → (when looked up, person): see ``auth.current_person``.
    token_cache: dict[str, tuple[float, Actor]] = field(default_factory=dict)


def open_database(settings: HubSettings) -> Database:
    """The hub database with its tables created (shared by the server and the users CLI)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.create_all()
    return db


def build_services(
    settings: HubSettings,
    registry: RecipeRegistry | None = None,
    protect: Protector | None = None,
) -> Services:
    """Open the database, load (or create) the hub key, sync recipes, requeue unanswered tasks."""
    db = open_database(settings)
    hub_key = load_or_create_key(settings.hub_key_path)
    book = RecipeBook(registry if registry is not None else default_registry())
    book.sync(db)
    notifier = Notifier()
    gate = Gate(db)
    nodes = NodeService(settings, db, hub_key, notifier)
    jobs = JobService(settings, db, book, hub_key, notifier, gate, protect)
    jobs.requeue_unanswered()
    privacy = PrivacyService(db, book, gate)
    approvals = ApprovalService(db, book, gate)
    transparency = Transparency(db, hub_key)
    psi = PsiRelay(db, book, notifier)
    trainer = Trainer(settings, db, notifier, SuperLink(settings) if settings.flower else None)
    jobs.trainer = trainer
    return Services(
        settings,
        db,
        hub_key,
        book,
        notifier,
        gate,
        nodes,
        jobs,
        privacy,
        approvals,
        transparency,
        psi,
        trainer,
    )
