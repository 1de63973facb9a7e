"""``create_app``: wire settings, services, routers, the error handler and the body limit."""

from __future__ import annotations

from fastapi import FastAPI

from datalab import __version__
from lab_server import error_handlers
from lab_server.body_limit import BodyLimit
from lab_server.console import routes as console
from lab_server.jobs import Protector
from lab_server.lifespan import lifespan
from lab_server.routes import (
    approval_requests,
    audit,
    catalogue,
    flower,
    health,
    jobs,
    nodes,
    privacy,
    psi_relay,
    recipes,
    users,
)
from lab_server.services import build_services
from lab_server.settings import HubSettings
from recipes.registry import RecipeRegistry

API_PREFIX = "/api/v1"


def create_app(
    settings: HubSettings,
    registry: RecipeRegistry | None = None,
    *,
    protect: Protector | None = None,
) -> FastAPI:
    services = build_services(settings, registry, protect)
    app = FastAPI(
        title="Data lab hub",
        version=__version__,
        description="Catalogue, recipes, jobs and audit of the federated data lab.",
        lifespan=lifespan(services),
    )
    app.state.services = services
    error_handlers.install(app)
    for module in (
        health,
        nodes,
        psi_relay,
        catalogue,
        recipes,
        jobs,
        flower,
        audit,
        users,
        privacy,
        approval_requests,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(console.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
