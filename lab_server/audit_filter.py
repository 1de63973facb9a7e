"""What auditors filter the log by: analyst, agency, recipe, outcome and time.

Entries do not all name these the same way (a job names its analyst as actor and its agencies
in a list; a task names one agency), so the rules live here, in one place, for the API, the
console and the CLI export.
"""

from __future__ import annotations

from dataclasses import dataclass

from datalab.errors import InvalidParameters
from datalab.wire import AuditEntry

#: outcome → the events that count as it.
OUTCOMES: dict[str, frozenset[str]] = {
    "released": frozenset({"result_released"}),
    "refused": frozenset(
        {"job_refused", "task_refused", "access_refused", "job_rejected", "registration_refused"}
    ),
    "failed": frozenset({"job_failed", "task_timed_out"}),
    "approval": frozenset(
        {"approval_requested", "approval_granted", "approval_rejected", "approval_revoked"}
    ),
}


@dataclass(frozen=True)
class AuditFilter:
    analyst: str | None = None
    agency: str | None = None
    recipe: str | None = None
    outcome: str | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise InvalidParameters(f"outcome must be one of {', '.join(OUTCOMES)}")

    @property
    def active(self) -> bool:
        return any(v is not None for v in vars(self).values())

    def matches(self, e: AuditEntry) -> bool:
        d = e.data
        if self.analyst is not None and e.actor != self.analyst:
            return False
        if self.agency is not None and self.agency not in (
            e.actor,
            d.get("agency"),
            *(d.get("agencies") or []),
        ):
            return False
        if self.recipe is not None and self.recipe not in (
            d.get("recipe"),
            f"{d.get('recipe')}@{d.get('version')}",
        ):
            return False
        if self.outcome is not None and e.event not in OUTCOMES[self.outcome]:
            return False
        if self.since is not None and e.ts < self.since:
            return False
        return not (self.until is not None and e.ts > self.until)
