"""Liveness and the hub's identity (its public key, which nodes pin)."""

from __future__ import annotations

from fastapi import APIRouter

from datalab import __version__
from datalab.wire import HubInfo
from lab_server.deps import Hub

router = APIRouter(tags=["hub"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/hub")
async def hub_info(hub: Hub) -> HubInfo:
    return HubInfo(version=__version__, public_key=hub.hub_key.public_key)
