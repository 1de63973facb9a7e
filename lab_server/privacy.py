"""Disclosure rules and privacy budgets as the hub serves and stores them.

Analysts read every rule (lab defaults, each recipe's policy, each agency's settings) and their
own budgets; agency admins set their agency's rules and budget caps. What the rules *do* is in
``recipes/rules.py`` and ``recipes/release.py``; the ledger is ``budget.py``. This module only
reads and writes the settings, through the permission gate, with an audit entry per change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from datalab.errors import InvalidParameters, NotFound
from datalab.wire import BudgetCapUpdate, BudgetView, RuleUpdate, RuleView
from lab_server import audit, budget
from lab_server.db import Database, Dataset, DisclosureSetting, Node
from lab_server.permissions import Actor, Gate, Resource
from lab_server.recipe_book import RecipeBook
from recipes.rules import BY_NAME, check_value, defaults, policy_values


def agency_layers(session: Session, agencies: Iterable[str]) -> list[dict[str, Any]]:
    """Each agency's admin-set values (one dict per agency that set any)."""
    wanted = sorted(set(agencies))
    layers: dict[str, dict[str, Any]] = {}
    rows = session.execute(
        select(DisclosureSetting).where(DisclosureSetting.agency.in_(wanted))
    ).scalars()
    for row in rows:
        layers.setdefault(row.agency, {})[row.name] = row.value
    return [layers[a] for a in wanted if a in layers]


class PrivacyService:
    def __init__(self, db: Database, book: RecipeBook, gate: Gate) -> None:
        self._db = db
        self._book = book
        self._gate = gate

    # ------------------------------------------------------------------ rules

    def rules(self, actor: Actor, recipe: str | None = None) -> list[RuleView]:
        """Every setting: the lab default, each recipe's value, each agency's value."""
        self._gate.ensure_allowed(actor, "read-privacy")
        base = defaults()
        out = [_view("lab", name, value) for name, value in base.items()]
        recipes = [self._book.get(recipe)] if recipe else self._book.all()
        for r in recipes:
            for name, value in policy_values(r.manifest.disclosure).items():
                out.append(_view(f"recipe:{r.key}", name, value))
        with self._db.read() as session:
            rows = session.execute(
                select(DisclosureSetting).order_by(DisclosureSetting.agency, DisclosureSetting.id)
            ).scalars()
            for row in rows:
                out.append(_view(f"agency:{row.agency}", row.name, row.value))
            for agency, min_cell in session.execute(select(Node.agency, Node.min_cell)).all():
                out.append(_view(f"node:{agency}", "min_cell", min_cell))
        return out

    def set_rule(self, actor: Actor, agency: str, update: RuleUpdate) -> list[RuleView]:
        self._gate.ensure_allowed(actor, "set-privacy", Resource(agency=agency))
        value = check_value(update.setting, update.value)
        with self._db.write() as session:
            row = session.execute(
                select(DisclosureSetting).where(
                    DisclosureSetting.agency == agency, DisclosureSetting.name == update.setting
                )
            ).scalar_one_or_none()
            if row is None:
                session.add(
                    DisclosureSetting(
                        agency=agency, name=update.setting, value=value, set_by=actor.name
                    )
                )
            else:
                row.value = value
                row.set_by = actor.name
            audit.record(
                session,
                audit.DisclosureSettingSet(
                    actor=actor.name, agency=agency, setting=update.setting, value=value
                ),
            )
        return [r for r in self.rules(actor) if r.scope == f"agency:{agency}"]

    # ------------------------------------------------------------------ budgets

    def budgets(self, actor: Actor, analyst: str | None = None) -> list[BudgetView]:
        """The analyst's budget on every dataset in the catalogue (spent, cap, remaining)."""
        self._gate.ensure_allowed(actor, "read-privacy")
        who = analyst or actor.name
        if who != actor.name:
            self._gate.ensure_allowed(actor, "read-any-job")
        with self._db.read() as session:
            scopes = [
                budget.dataset_scope(a, n)
                for a, n in session.execute(select(Dataset.agency, Dataset.name)).all()
            ]
            scopes += budget.pair_scopes(session, who)
            balances = budget.balances(session, who, scopes)
        return [
            BudgetView(analyst=who, scope=b.scope, cap=b.cap, spent=b.spent, remaining=b.remaining)
            for b in balances
        ]

    def set_cap(self, actor: Actor, update: BudgetCapUpdate) -> BudgetView:
        if ":" not in update.scope or "/" not in update.scope:
            raise InvalidParameters(
                "scope must look like dataset:<agency>/<dataset> or psi:<agency>/<counterparty> "
                "(see lab.budget())"
            )
        agency = budget.scope_agency(update.scope)
        self._gate.ensure_allowed(actor, "set-privacy", Resource(agency=agency))
        with self._db.write() as session:
            if update.scope.startswith("dataset:"):
                name = update.scope.split("/", 1)[1]
                known = session.execute(
                    select(Dataset.id).where(Dataset.agency == agency, Dataset.name == name)
                ).first()
                if known is None:
                    raise NotFound(f"agency {agency} has no dataset {name!r}")
            elif update.scope.startswith("psi:"):
                other = update.scope.split("/", 1)[1]
                known = session.execute(select(Dataset.id).where(Dataset.agency == other)).first()
                if known is None:
                    raise NotFound(f"no node of agency {other!r} is registered")
            else:
                raise InvalidParameters("scope must start with 'dataset:' or 'psi:'")
            budget.set_cap(
                session, agency, update.scope, update.analyst, update.epsilon, actor.name
            )
            who = update.analyst
            cap = budget.cap_for(session, who, update.scope)
            used = budget.spent(session, who, update.scope)
        return BudgetView(
            analyst=who, scope=update.scope, cap=cap, spent=used, remaining=max(cap - used, 0)
        )


def _view(scope: str, name: str, value: Any) -> RuleView:
    setting = BY_NAME[name]
    return RuleView(
        scope=scope,
        setting=name,
        value=value,
        default=setting.default,
        description=setting.description,
    )
