"""The reviewed recipes this hub runs, with their code hashes and manifests."""

from __future__ import annotations

from fastapi import APIRouter

from datalab.wire import RecipeInfo
from lab_server.deps import CurrentUser, Hub

router = APIRouter(tags=["recipes"])


@router.get("/recipes")
def list_recipes(user: CurrentUser, hub: Hub) -> list[RecipeInfo]:
    hub.gate.ensure_allowed(user, "list-recipes")
    return hub.book.infos()


@router.get("/recipes/{name}")
def get_recipe(name: str, user: CurrentUser, hub: Hub, version: str | None = None) -> RecipeInfo:
    hub.gate.ensure_allowed(user, "list-recipes")
    return hub.book.info(hub.book.get(name, version))
