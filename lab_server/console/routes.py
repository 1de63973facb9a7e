"""The console's pages: sign-in, the agency admin's queue, the auditor's log, the operator's
nodes and users. Every page goes through the permissions table (``Gate``), like the API."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from datalab.errors import BadRequest, DatalabError, Unauthorized
from datalab.log_proofs import verify_log
from datalab.wire import AuditEntry, SignedApproval, SignedRevocation
from lab_server import users
from lab_server.audit_filter import AuditFilter
from lab_server.auth import person_for_token, services_of
from lab_server.checkpoints import to_entry
from lab_server.db import AuditRow
from lab_server.permissions import Actor, Resource, decide
from lab_server.review import review
from lab_server.services import Services

HERE = Path(__file__).parent
COOKIE = "datalab_console"
FILTER_NAMES = ("analyst", "agency", "recipe", "outcome", "since", "until")
#: the most log entries one page shows (the export has them all).
PAGE_ENTRIES = 500

router = APIRouter(prefix="/console", include_in_schema=False)
_env = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
)
_env.filters["utc"] = lambda ts: (
    datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "never"
)

#: the pages each action opens, in the header's order.
_NAV = (
    ("approve-recipe", "/console/queue", "Approval queue"),
    ("read-audit", "/console/audit", "Audit log"),
    ("list-nodes", "/console/nodes", "Nodes and users"),
)


def _nav(person: Actor) -> list[tuple[str, str]]:
    return [
        (href, label)
        for action, href, label in _NAV
        if decide(person, action, Resource(agency=person.agency)).allowed
    ]


def _render(template: str, person: Actor | None, status: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(
        person=person, nav=_nav(person) if person else [], **context
    )
    return HTMLResponse(html, status_code=status)


def _person(request: Request) -> Actor | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return person_for_token(services_of(request), token)
    except Unauthorized:
        return None


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def _page(request: Request, build: Callable[[Services, Actor], Response]) -> Response:
    """Run ``build`` for the signed-in person; sign-in page if none; errors as pages."""
    person = await run_in_threadpool(_person, request)
    if person is None:
        return RedirectResponse("/console/sign-in", status_code=303)
    try:
        return await run_in_threadpool(build, services_of(request), person)
    except DatalabError as exc:
        return _render("error.html", person, exc.status, title="Not possible", message=exc.message)


# ------------------------------------------------------------------ sign-in


@router.get("/sign-in")
def sign_in_page() -> HTMLResponse:
    return _render("sign_in.html", None, title="Sign in")


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    token = (await _form(request)).get("token", "").strip()
    try:
        await run_in_threadpool(person_for_token, services_of(request), token)
    except Unauthorized:
        return _render("sign_in.html", None, 401, title="Sign in", error="unknown token")
    response = RedirectResponse("/console/", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/console")
    return response


@router.post("/sign-out")
def sign_out() -> Response:
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.get("/")
async def home(request: Request) -> Response:
    def build(hub: Services, person: Actor) -> Response:
        pages = _nav(person)
        if pages:
            return RedirectResponse(pages[0][0], status_code=303)
        return _render(
            "error.html",
            person,
            title="Nothing here for you",
            message="The console is for agency admins, auditors and operators; analysts use "
            "the Python client or the datalab command.",
        )

    return await _page(request, build)


@router.get("/static/sign.js")
def sign_js() -> Response:
    return Response((HERE / "static" / "sign.js").read_text(), media_type="text/javascript")


# ------------------------------------------------------------------ agency admins


@router.get("/queue")
async def queue(request: Request) -> Response:
    def build(hub: Services, person: Actor) -> Response:
        hub.gate.ensure_allowed(person, "approve-recipe", Resource(agency=person.agency))
        rows = []
        for r in hub.approvals.list(person):
            for d in r.decisions:
                if d.agency == person.agency:
                    rows.append((r, d))
        return _render("queue.html", person, title="Approval queue", rows=rows)

    return await _page(request, build)


@router.get("/queue/{request_id}")
async def review_page(request: Request, request_id: str) -> Response:
    flash = request.query_params.get("done")

    def build(hub: Services, person: Actor) -> Response:
        material = review(hub, person, request_id)
        r = material.request
        decision = next(d for d in r.decisions if d.agency == person.agency)
        return _render(
            "request.html",
            person,
            title=f"Review {r.recipe}",
            r=r,
            d=decision,
            source=material.code,
            manifest=json.dumps(material.manifest, indent=2),
            mock=material.mock,
            mock_note=material.mock_note,
            flash=flash,
        )

    return await _page(request, build)


@router.post("/queue/{request_id}/approve")
async def approve(request: Request, request_id: str) -> Response:
    form = await _form(request)

    def build(hub: Services, person: Actor) -> Response:
        try:
            signed = SignedApproval.model_validate_json(form.get("signed") or "")
        except ValidationError:
            raise BadRequest("the approval was not signed (choose the agency key)") from None
        hub.approvals.approve(person, request_id, signed)
        return RedirectResponse(f"/console/queue/{request_id}?done=approved", status_code=303)

    return await _page(request, build)


@router.post("/queue/{request_id}/reject")
async def reject(request: Request, request_id: str) -> Response:
    form = await _form(request)

    def build(hub: Services, person: Actor) -> Response:
        hub.approvals.reject(person, request_id, form.get("reason", ""))
        return RedirectResponse(f"/console/queue/{request_id}?done=rejected", status_code=303)

    return await _page(request, build)


@router.post("/revoke")
async def revoke(request: Request) -> Response:
    form = await _form(request)

    def build(hub: Services, person: Actor) -> Response:
        try:
            signed = SignedRevocation.model_validate_json(form.get("signed") or "")
        except ValidationError:
            raise BadRequest("the revocation was not signed (choose the agency key)") from None
        hub.approvals.revoke(person, signed)
        back = form.get("request_id") or ""
        return RedirectResponse(f"/console/queue/{back}?done=revoked", status_code=303)

    return await _page(request, build)


# ------------------------------------------------------------------ auditors


def _entries(hub: Services, wanted: AuditFilter) -> list[AuditEntry]:
    with hub.db.read() as session:
        rows = session.execute(select(AuditRow).order_by(AuditRow.seq)).scalars()
        return [e for e in (to_entry(r) for r in rows) if wanted.matches(e)]


def _filter(request: Request) -> tuple[AuditFilter, dict[str, str]]:
    given = {k: v for k in FILTER_NAMES if (v := request.query_params.get(k, "").strip())}
    try:
        times = {k: float(given[k]) for k in ("since", "until") if k in given}
    except ValueError:
        raise BadRequest("since and until are Unix times in seconds") from None
    wanted = AuditFilter(
        analyst=given.get("analyst"),
        agency=given.get("agency"),
        recipe=given.get("recipe"),
        outcome=given.get("outcome"),
        **times,
    )
    return wanted, given


@router.get("/audit")
async def audit_log(request: Request) -> Response:
    def build(hub: Services, person: Actor) -> Response:
        hub.gate.ensure_allowed(person, "read-audit")
        wanted, given = _filter(request)
        hub.transparency.publish()
        everything = _entries(hub, AuditFilter())
        verification = verify_log(
            everything, hub.transparency.checkpoints(), hub.hub_key.public_key
        )
        entries = [e for e in everything if wanted.matches(e)]
        return _render(
            "audit.html",
            person,
            title="Audit log",
            verification=verification,
            entries=entries[-PAGE_ENTRIES:][::-1],
            truncated=len(entries) > PAGE_ENTRIES,
            filters=given,
            filter_names=FILTER_NAMES,
            query=urlencode(given),
        )

    return await _page(request, build)


@router.get("/audit/export.{fmt}")
async def export(request: Request, fmt: str) -> Response:
    def build(hub: Services, person: Actor) -> Response:
        hub.gate.ensure_allowed(person, "read-audit")
        if fmt not in ("csv", "parquet"):
            raise BadRequest("export as .csv or .parquet")
        wanted, _ = _filter(request)
        frame = pd.DataFrame.from_records(
            [
                {**e.model_dump(), "data": json.dumps(e.data, sort_keys=True)}
                for e in _entries(hub, wanted)
            ],
            columns=list(AuditEntry.model_fields),
        )
        out = io.BytesIO()
        if fmt == "csv":
            frame.to_csv(out, index=False)
            media = "text/csv"
        else:
            frame.to_parquet(out, index=False)
            media = "application/vnd.apache.parquet"
        return Response(
            out.getvalue(),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="audit.{fmt}"'},
        )

    return await _page(request, build)


# ------------------------------------------------------------------ operators


@router.get("/nodes")
async def nodes(request: Request) -> Response:
    def build(hub: Services, person: Actor) -> Response:
        hub.gate.ensure_allowed(person, "list-nodes")
        people = []
        if decide(person, "manage-users").allowed:
            with hub.db.read() as session:
                people = [
                    {"name": u.name, "role": u.role, "agency": u.agency}
                    for u in users.all_users(session)
                ]
        return _render(
            "nodes.html", person, title="Nodes and users", nodes=hub.nodes.list(), users=people
        )

    return await _page(request, build)
