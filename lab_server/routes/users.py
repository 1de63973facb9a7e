"""People management for operators (the CLI does the same on the hub machine)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from lab_server import users
from lab_server.deps import CurrentUser, Hub

router = APIRouter(tags=["users"])


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    role: str
    agency: str | None = None


@router.post("/users", status_code=201)
def create_user(body: NewUser, user: CurrentUser, hub: Hub) -> dict[str, str | None]:
    """Create a person; the token is in this response only and is never shown again."""
    hub.gate.ensure_allowed(user, "manage-users")
    with hub.db.write() as session:
        token = users.create(
            session, by=user.name, name=body.name, role=body.role, agency=body.agency
        )
    return {"name": body.name, "role": body.role, "agency": body.agency, "token": token}
