"""One place where failures become HTTP responses: ``{"error": {"code", "message"}}``.

A ``DatalabError`` already carries its status and a public message. Request validation becomes a
422 naming the field (or 400 for JSON that does not parse), routing errors keep their status, and
anything unexpected becomes a 500 with a generic message: a stack trace could carry data, so it
goes to the hub's log, never to the caller.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from datalab.errors import (
    BadRequest,
    DatalabError,
    Forbidden,
    InvalidParameters,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)

log = logging.getLogger("datalab.hub")

_BY_STATUS: dict[int, type[DatalabError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    413: PayloadTooLarge,
    422: InvalidParameters,
}


def render(error: DatalabError, status: int | None = None) -> JSONResponse:
    return JSONResponse(error.to_body(), status_code=status or error.status)


async def on_datalab_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DatalabError)
    return render(exc)


async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return render(BadRequest("malformed JSON body"))
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    where = f"field '{'.'.join(loc)}'" if loc else "the request body"
    message = f"invalid request: {where}: {first.get('msg', 'invalid value')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return render(InvalidParameters(message))


async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    cls = _BY_STATUS.get(exc.status_code, BadRequest if exc.status_code < 500 else DatalabError)
    return render(cls(str(exc.detail)), exc.status_code)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    route = getattr(request.scope.get("route"), "path", "?")
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, route, exc_info=exc)
    return render(DatalabError("internal error in the lab server; the operator's log has details"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(DatalabError, on_datalab_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
