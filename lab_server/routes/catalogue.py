"""The catalogue people browse, and who they are."""

from __future__ import annotations

import time

from fastapi import APIRouter

from datalab.wire import AgencyCatalogue
from lab_server.catalogue import agency_catalogues
from lab_server.deps import CurrentUser, Hub

router = APIRouter(tags=["catalogue"])


@router.get("/whoami")
def whoami(user: CurrentUser) -> dict[str, str | None]:
    return {"name": user.name, "role": user.role.value, "agency": user.agency}


@router.get("/catalogue")
def catalogue(user: CurrentUser, hub: Hub) -> list[AgencyCatalogue]:
    hub.gate.ensure_allowed(user, "read-catalogue")
    # A node waiting in a long-poll was seen at most long_poll_max_s ago.
    online_within = max(hub.settings.node_timeout_s, hub.settings.long_poll_max_s + 5)
    with hub.db.read() as session:
        return agency_catalogues(session, online_within, time.time())
