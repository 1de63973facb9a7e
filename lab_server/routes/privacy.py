"""Disclosure rules and privacy budgets: read by everyone signed in, set by agency admins."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from datalab.wire import BudgetCapUpdate, BudgetView, RuleUpdate, RuleView
from lab_server.deps import CurrentUser, Hub

router = APIRouter(tags=["privacy"])


@router.get("/privacy/rules")
def list_rules(user: CurrentUser, hub: Hub, recipe: str | None = None) -> list[RuleView]:
    """Every disclosure setting with its value and default, per scope (lab, recipe, agency)."""
    return hub.privacy.rules(user, recipe)


@router.put("/privacy/rules/{agency}")
def set_rule(agency: str, body: RuleUpdate, user: CurrentUser, hub: Hub) -> list[RuleView]:
    return hub.privacy.set_rule(user, agency, body)


@router.get("/privacy/budget")
async def my_budget(user: CurrentUser, hub: Hub, analyst: str | None = None) -> list[BudgetView]:
    """The analyst's epsilon budget per dataset: cap, spent, remaining."""
    return await run_in_threadpool(hub.privacy.budgets, user, analyst)


@router.put("/privacy/budget")
def set_budget(body: BudgetCapUpdate, user: CurrentUser, hub: Hub) -> BudgetView:
    return hub.privacy.set_cap(user, body)
