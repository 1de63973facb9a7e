"""Who may do what: one table of actions × roles, and one check.

Routes never test roles themselves; they call ``Gate.ensure_allowed(actor, action, resource)``.
Every decision carries a reason: a refusal's reason is what the person sees in the 403 and what
the audit log records, so "why was I refused?" has one answer everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from datalab.errors import Forbidden
from lab_server import audit
from lab_server.db import Database


class Role(StrEnum):
    ANALYST = "analyst"
    AGENCY_ADMIN = "agency_admin"
    AUDITOR = "auditor"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Actor:
    """A signed-in person, as the permission check sees them."""

    name: str
    role: Role
    agency: str | None = None


@dataclass(frozen=True)
class Resource:
    """What an action is about: its owner (a job's analyst) or its agency (an approval)."""

    owner: str | None = None
    agency: str | None = None


Scope = Literal["any", "own", "agency"]


@dataclass(frozen=True)
class Action:
    name: str
    description: str
    roles: frozenset[Role]
    #: "own": only on resources the actor owns; "agency": only on the actor's agency's.
    scope: Scope = "any"
    #: an action whose holders may do this one too, whatever the scope (read-any ⇒ read-own).
    implied_by: str | None = None


def _action(
    name: str,
    description: str,
    *roles: Role,
    scope: Scope = "any",
    implied_by: str | None = None,
) -> Action:
    return Action(name, description, frozenset(roles), scope, implied_by)


R = Role
#: THE permissions table.
ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        _action(
            "read-catalogue",
            "browse agencies, datasets and columns",
            R.ANALYST,
            R.AGENCY_ADMIN,
            R.AUDITOR,
            R.OPERATOR,
        ),
        _action(
            "list-recipes",
            "list the reviewed recipes",
            R.ANALYST,
            R.AGENCY_ADMIN,
            R.AUDITOR,
            R.OPERATOR,
        ),
        _action("run-job", "submit a job", R.ANALYST),
        _action(
            "read-own-job",
            "read one's own jobs and results",
            R.ANALYST,
            scope="own",
            implied_by="read-any-job",
        ),
        _action("read-any-job", "read every job and result", R.AUDITOR),
        _action("read-audit", "read and verify the audit log", R.AUDITOR),
        _action("manage-users", "create people and their tokens", R.OPERATOR),
        _action("manage-nodes", "remove a node so it can re-enrol", R.OPERATOR),
        _action("list-nodes", "see nodes, their versions and last contact", R.OPERATOR, R.AUDITOR),
        _action("request-approval", "ask agencies to approve a recipe for a purpose", R.ANALYST),
        _action(
            "read-own-request",
            "read one's own approval requests",
            R.ANALYST,
            scope="own",
            implied_by="read-any-request",
        ),
        _action("read-any-request", "read every approval request", R.AUDITOR),
        _action(
            "read-privacy",
            "read the disclosure rules and one's own privacy budget",
            R.ANALYST,
            R.AGENCY_ADMIN,
            R.AUDITOR,
            R.OPERATOR,
        ),
        _action(
            "set-privacy",
            "set disclosure rules and privacy budgets for one's own agency's data",
            R.AGENCY_ADMIN,
            scope="agency",
        ),
        _action(
            "approve-recipe",
            "approve, narrow, reject or revoke a recipe for one's own agency's data",
            R.AGENCY_ADMIN,
            scope="agency",
        ),
    )
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def decide(actor: Actor, action_name: str, resource: Resource | None = None) -> Decision:
    """Whether ``actor`` may do ``action_name`` on ``resource``, and why (pure; no side effects)."""
    action = ACTIONS.get(action_name)
    if action is None:
        return Decision(False, f"unknown action {action_name!r}")
    if action.implied_by is not None:
        implied = decide(actor, action.implied_by, resource)
        if implied.allowed:
            return implied
    if actor.role not in action.roles:
        allowed = ", ".join(sorted(r.value for r in action.roles))
        return Decision(
            False, f"{action.name} is for {allowed}; you are signed in as {actor.role.value}"
        )
    if action.scope == "own":
        if resource is None or resource.owner != actor.name:
            return Decision(False, f"{action.name}: this belongs to someone else")
        return Decision(True, f"{actor.role.value} owns it")
    if action.scope == "agency":
        if resource is None or resource.agency is None or resource.agency != actor.agency:
            return Decision(False, f"{action.name}: only for your own agency")
        return Decision(True, f"{actor.role.value} of agency {actor.agency}")
    return Decision(True, f"{actor.role.value} may {action.name}")


class Gate:
    """The one enforcement point: ``ensure_allowed`` raises Forbidden and audits the refusal."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def ensure_allowed(self, actor: Actor, action: str, resource: Resource | None = None) -> None:
        decision = decide(actor, action, resource)
        if decision.allowed:
            return
        with self._db.write() as session:
            audit.record(
                session,
                audit.AccessRefused(actor=actor.name, action=action, reason=decision.reason),
            )
        raise Forbidden(f"not allowed: {decision.reason}")
