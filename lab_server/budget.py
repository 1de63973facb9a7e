"""The privacy-budget ledger: how much epsilon each analyst may spend, and has spent, per scope.

A **scope** is what a budget is kept for. Today it is one dataset, ``dataset:<agency>/<name>``;
a PSI counterparty will be ``psi:<agency>/<counterparty>`` (the ledger treats scopes as opaque
strings, so that needs no change here). A **cap** is set by the admin of the agency owning the
scope, for one analyst or for every analyst (``*``); without one, the lab's
``epsilon_budget`` default applies (tightened by the agency's own default setting, if any).

Debits are taken when a job is created, in the same transaction that writes the job and its
tasks — before any node computes and long before anything is released. Each debit is one
conditional ``UPDATE ... SET spent = spent + e WHERE spent + e <= cap``: the database, not this
process, decides, so concurrent jobs (threads, or several hub processes on PostgreSQL) can never
spend past the cap. A job that fails before any node returned a result is refunded in the same
transaction that ends it (``refund``: nothing was learned); any other failure or refusal keeps
its debit (spent ≥ released, always), and nothing resets an account: it is keyed by the
analyst's name, not by a session or a token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from datalab.errors import BudgetExhausted
from lab_server import audit
from lab_server.db import BudgetAccount, BudgetCap, BudgetDebit, DisclosureSetting
from recipes.contract import Recipe, Target
from recipes.dp_matching import DPMatching
from recipes.rules import BY_NAME

#: the cap that applies to every analyst without their own.
EVERYONE = "*"
#: slack for float sums of epsilons (0.1 + 0.2 must fit under a cap of 0.3).
_SLACK = 1e-9


def dataset_scope(agency: str, dataset: str) -> str:
    return f"dataset:{agency}/{dataset}"


def psi_scope(agency: str, counterparty: str) -> str:
    """The scope of PSI cardinalities between ``agency``'s data and ``counterparty``'s."""
    return f"psi:{agency}/{counterparty}"


def scopes_for(recipe: Recipe, targets: Sequence[Target]) -> list[str]:
    """What a differentially private job is charged to: for a matching recipe, the pair of
    agencies seen from each side (``psi:<asking>/<answering>`` and ``psi:<answering>/<asking>``,
    so each agency's admin caps what is learned about its own people from that counterparty);
    else each target dataset."""
    if isinstance(recipe, DPMatching):
        asking, answering = recipe.counterparties(targets)
        return [psi_scope(asking, answering), psi_scope(answering, asking)]
    return [dataset_scope(t.agency, t.dataset) for t in targets]


def scope_agency(scope: str) -> str:
    """The agency owning a scope (the one whose admin sets its caps)."""
    return scope.split(":", 1)[1].split("/", 1)[0]


@dataclass(frozen=True)
class Balance:
    scope: str
    cap: float
    spent: float

    @property
    def remaining(self) -> float:
        return max(self.cap - self.spent, 0.0)


def cap_for(session: Session, analyst: str, scope: str) -> float:
    """The analyst's cap on ``scope``: their own, else the scope's ``*``, else the default."""
    rows = session.execute(
        select(BudgetCap.analyst, BudgetCap.epsilon).where(
            BudgetCap.scope == scope, BudgetCap.analyst.in_([analyst, EVERYONE])
        )
    ).all()
    caps = dict(rows)
    if analyst in caps:
        return float(caps[analyst])
    if EVERYONE in caps:
        return float(caps[EVERYONE])
    return default_cap(session, scope_agency(scope))


def default_cap(session: Session, agency: str) -> float:
    """The lab default ``epsilon_budget``, or the agency admin's (smaller) one."""
    value = session.execute(
        select(DisclosureSetting.value).where(
            DisclosureSetting.agency == agency, DisclosureSetting.name == "epsilon_budget"
        )
    ).scalar_one_or_none()
    default = float(BY_NAME["epsilon_budget"].default)
    return min(default, float(value)) if value is not None else default


def spent(session: Session, analyst: str, scope: str) -> float:
    value = session.get(BudgetAccount, (analyst, scope))
    return float(value.spent) if value is not None else 0.0


def pair_scopes(session: Session, analyst: str) -> list[str]:
    """The PSI pair scopes the analyst has an account or a cap on (pairs are not listed in the
    catalogue, so the ones in use are what ``lab.budget()`` shows)."""
    used = select(BudgetAccount.scope).where(BudgetAccount.analyst == analyst)
    capped = select(BudgetCap.scope).where(BudgetCap.analyst.in_([analyst, EVERYONE]))
    found = {*session.execute(used).scalars(), *session.execute(capped).scalars()}
    return sorted(s for s in found if s.startswith("psi:"))


def balances(session: Session, analyst: str, scopes: Iterable[str]) -> list[Balance]:
    return [
        Balance(scope, cap_for(session, analyst, scope), spent(session, analyst, scope))
        for scope in sorted(set(scopes))
    ]


def debit(
    session: Session, analyst: str, scopes: Sequence[str], epsilon: float, job_id: str
) -> None:
    """Spend ``epsilon`` of every scope for ``job_id``, or none of them (BudgetExhausted).

    Runs inside the caller's write transaction: when it raises, the caller's transaction
    rolls back with it, so a refused job leaves no partial debit behind.
    """
    for scope in sorted(set(scopes)):
        cap = cap_for(session, analyst, scope)
        _ensure_account(session, analyst, scope)
        result = session.execute(
            update(BudgetAccount)
            .where(
                BudgetAccount.analyst == analyst,
                BudgetAccount.scope == scope,
                BudgetAccount.spent + epsilon <= cap + _SLACK,
            )
            .values(spent=BudgetAccount.spent + epsilon)
            .execution_options(synchronize_session=False)
        )
        if int(result.rowcount or 0) != 1:  # type: ignore[attr-defined]
            left = max(cap - spent(session, analyst, scope), 0.0)
            raise BudgetExhausted(
                f"privacy budget exhausted for {scope}: this query needs epsilon {epsilon:g}, "
                f"{left:.4g} of your {cap:g} is left; ask the agency's admin "
                f"({scope_agency(scope)}) for more"
            )
        session.add(BudgetDebit(analyst=analyst, scope=scope, job_id=job_id, epsilon=epsilon))
        audit.record(
            session,
            audit.BudgetDebited(
                actor=analyst, job_id=job_id, scope=scope, epsilon=epsilon, cap=cap
            ),
        )


def refund(session: Session, job_id: str) -> float:
    """Give back what ``job_id`` was debited (once), in the caller's transaction; returns it.

    Only for a job that ended before any node returned a result: nothing computed from the
    data reached anyone, so nothing was spent. The ledger keeps the debit and adds a negative
    entry, so the sum of a scope's entries is always its ``spent``.
    """
    rows = list(session.execute(select(BudgetDebit).where(BudgetDebit.job_id == job_id)).scalars())
    if not rows or any(r.epsilon < 0 for r in rows):
        return 0.0  # not a DP job, or refunded already
    total = 0.0
    for row in rows:
        session.execute(
            update(BudgetAccount)
            .where(BudgetAccount.analyst == row.analyst, BudgetAccount.scope == row.scope)
            .values(spent=BudgetAccount.spent - row.epsilon)
            .execution_options(synchronize_session=False)
        )
        session.add(
            BudgetDebit(analyst=row.analyst, scope=row.scope, job_id=job_id, epsilon=-row.epsilon)
        )
        audit.record(
            session,
            audit.BudgetRefunded(
                actor=audit.HUB, job_id=job_id, scope=row.scope, epsilon=row.epsilon
            ),
        )
        total += row.epsilon
    return total


def _ensure_account(session: Session, analyst: str, scope: str) -> None:
    if session.get(BudgetAccount, (analyst, scope)) is not None:
        return
    try:
        with session.begin_nested():
            session.add(BudgetAccount(analyst=analyst, scope=scope, spent=0.0))
    except IntegrityError:
        pass  # another transaction created it first: fine, the UPDATE decides


def set_cap(
    session: Session, agency: str, scope: str, analyst: str, epsilon: float, set_by: str
) -> None:
    row = session.execute(
        select(BudgetCap).where(BudgetCap.scope == scope, BudgetCap.analyst == analyst)
    ).scalar_one_or_none()
    if row is None:
        session.add(
            BudgetCap(agency=agency, scope=scope, analyst=analyst, epsilon=epsilon, set_by=set_by)
        )
    else:
        row.epsilon = epsilon
        row.set_by = set_by
    audit.record(
        session,
        audit.BudgetCapSet(
            actor=set_by, agency=agency, scope=scope, analyst=analyst, epsilon=epsilon
        ),
    )
