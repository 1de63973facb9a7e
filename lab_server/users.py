"""People: who they are, their role, and their bearer token (stored only as its sha256)."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from datalab.errors import Conflict, InvalidParameters
from lab_server import audit
from lab_server.db import User
from lab_server.permissions import Actor, Role

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
AGENCY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_new_user(name: str, role: str, agency: str | None) -> Role:
    """The role, if ``name``/``role``/``agency`` make a valid person; InvalidParameters if not."""
    if not NAME_PATTERN.match(name):
        raise InvalidParameters(
            "name must be 1-64 characters: letters, digits, '_', '.', '@' or '-'"
        )
    try:
        parsed = Role(role)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidParameters(f"role must be one of {roles}; got {role!r}") from None
    if agency is not None and not AGENCY_PATTERN.match(agency):
        raise InvalidParameters("agency must be 1-64 characters: letters, digits, '_', '.' or '-'")
    if parsed is Role.AGENCY_ADMIN and agency is None:
        raise InvalidParameters("an agency_admin needs an agency")
    return parsed


def create(session: Session, *, by: str, name: str, role: str, agency: str | None) -> str:
    """Create a person in the caller's transaction; returns their token (shown once, never kept)."""
    parsed = check_new_user(name, role, agency)
    if session.execute(select(User.id).where(User.name == name)).first() is not None:
        raise Conflict(f"a user named {name!r} already exists")
    token = new_token()
    session.add(User(name=name, role=parsed.value, agency=agency, token_sha256=hash_token(token)))
    audit.record(session, audit.UserCreated(actor=by, user=name, role=parsed.value, agency=agency))
    return token


def by_token(session: Session, token: str) -> Actor | None:
    user = session.execute(
        select(User).where(User.token_sha256 == hash_token(token))
    ).scalar_one_or_none()
    if user is None:
        return None
    return Actor(name=user.name, role=Role(user.role), agency=user.agency)


def all_users(session: Session) -> list[User]:
    return list(session.execute(select(User).order_by(User.name)).scalars())
