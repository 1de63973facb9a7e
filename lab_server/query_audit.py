"""Query auditing at the hub: what to send the nodes with a task, and the check at release.

Each released result of a non-DP recipe is remembered per analyst and dataset
(``ReleasedQuery``: filters, group keys, keys of the released cells). A new task carries the
latest of those (``MAX_PRIOR``) so its node can answer with atom counts over them; at release,
``recipes.auditing.check_differencing`` refuses results that would isolate a few people when
subtracted from earlier ones. The analysis is in ``recipes/auditing.py``; this module only reads
and writes the hub's tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from datalab.canonical import digest
from datalab.wire import Table
from lab_server.catalogue import load_catalogue
from lab_server.db import Job, ReleasedQuery, TaskRow
from recipes.auditing import AuditedQuery, NodeAtoms, check_differencing, check_linear
from recipes.contract import AggregatePlan, GroupKey, Recipe

#: the most earlier queries one task is audited against (the latest distinct ones); nodes
#: accept up to ``node_agent.executor.MAX_AUDITED``.
MAX_PRIOR = 100


def query_shape(plan: AggregatePlan) -> str:
    """What makes two releases the same query set and grouping (so the same cells)."""
    return digest(
        {
            "filters": [f.model_dump(mode="json") for f in plan.filters],
            "group_by": [g.model_dump(mode="json") for g in plan.group_by],
        }
    )


def priors_for(
    session: Session, analyst: str, agency: str, dataset: str, current: str | None = None
) -> list[dict[str, Any]]:
    """The analyst's latest released queries on one dataset, as a task's ``audit`` list.

    ``current`` is the ``query_shape`` of the query being asked: earlier releases of exactly
    that query released exactly these cells, so they are left out.
    """
    rows = session.execute(
        select(ReleasedQuery)
        .where(
            ReleasedQuery.analyst == analyst,
            ReleasedQuery.agency == agency,
            ReleasedQuery.dataset == dataset,
        )
        .order_by(ReleasedQuery.id.desc())
        .limit(MAX_PRIOR * 5)
    ).scalars()
    # A query repeated with the same filters and groups released the same cells: differencing
    # against it again adds nothing, so only its latest release is audited (and the nodes count
    # atoms over distinct query sets only).
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        shape = digest({"filters": r.filters, "group_by": r.group_by})
        if shape != current and shape not in latest and len(latest) < MAX_PRIOR:
            latest[shape] = {"job_id": r.job_id, "filters": r.filters, "group_by": r.group_by}
    return list(latest.values())


def check_and_remember(
    session: Session,
    job: Job,
    recipe: Recipe,
    done: Sequence[TaskRow],
    released: Table,
    count_column: str,
    min_difference: int,
    min_cell: int = 0,
) -> None:
    """Refuse (JobRefused) a release that differencing against earlier ones, or linear
    reasoning over them (``min_cell`` > 1), would break, else remember it for the next audit.
    Runs in the release transaction: all or nothing."""
    catalogue = {(a, d.name): d for a, d in load_catalogue(session)}
    plans: dict[tuple[str, str], AggregatePlan] = {}
    for t in done:
        dataset = catalogue.get((t.agency, t.dataset))
        if dataset is not None:
            plans[(t.agency, t.dataset)] = recipe.plan(job.params, dataset)
    if not plans:
        return
    group_by = next(iter(plans.values())).group_by
    keys = _released_keys(released, group_by, count_column)
    audited = [t for t in done if t.partial and t.partial.get("audit_atoms") is not None]
    prior_ids = list(
        dict.fromkeys(item["job_id"] for t in audited for item in t.task.get("audit") or [])
    )
    if prior_ids:
        queries = [AuditedQuery(job.id, group_by, keys), *_earlier(session, job, prior_ids)]
        atoms = [
            NodeAtoms(
                table=Table.model_validate(t.partial["audit_atoms"]),
                query_ids=[job.id, *(item["job_id"] for item in t.task.get("audit") or [])],
            )
            for t in audited
            if t.partial
        ]
        check_differencing(queries, atoms, min_difference)
        check_linear(queries, atoms, min_cell)
    for (agency, name), plan in plans.items():
        session.add(
            ReleasedQuery(
                analyst=job.analyst,
                job_id=job.id,
                agency=agency,
                dataset=name,
                filters=[f.model_dump(mode="json") for f in plan.filters],
                group_by=[g.model_dump(mode="json") for g in plan.group_by],
                released=keys,
            )
        )


def _earlier(session: Session, job: Job, job_ids: list[str]) -> list[AuditedQuery]:
    rows = session.execute(
        select(ReleasedQuery).where(
            ReleasedQuery.analyst == job.analyst, ReleasedQuery.job_id.in_(job_ids)
        )
    ).scalars()
    seen: dict[str, AuditedQuery] = {}
    for r in rows:
        if r.job_id not in seen:
            group_by = [GroupKey.model_validate(g) for g in r.group_by]
            seen[r.job_id] = AuditedQuery(r.job_id, group_by, [list(k) for k in r.released])
    return [seen[j] for j in job_ids if j in seen]


def _released_keys(
    table: Table, group_by: Sequence[GroupKey], count_column: str
) -> list[list[Any]]:
    """The key values (in ``group_by`` order) of every released (not withheld) row."""
    names = [g.output_name for g in group_by]
    at = [table.columns.index(n) for n in names if n in table.columns]
    if len(at) != len(names) or count_column not in table.columns:
        return []
    count_at = table.columns.index(count_column)
    return [[row[i] for i in at] for row in table.rows if row[count_at] is not None]
