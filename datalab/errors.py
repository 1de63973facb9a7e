"""Errors that carry their HTTP status and a stable code.

One class per kind of failure, shared by hub, node and client: the hub renders any DatalabError
as ``{"error": {"code", "message"}}`` with its status; the client turns that body back into the
same class. ``message`` is public (an analyst may read it, so it never holds data values);
``detail`` is for the log of the party that raised it and never crosses a trust boundary.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DatalabError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(DatalabError):
    status = 400
    code = "bad_request"


class InvalidParameters(DatalabError):
    """A recipe parameter is unknown, of the wrong type or out of bounds."""

    status = 422
    code = "invalid_parameters"


class Unauthorized(DatalabError):
    status = 401
    code = "unauthorized"


class Forbidden(DatalabError):
    status = 403
    code = "forbidden"


class NotFound(DatalabError):
    status = 404
    code = "not_found"


class Conflict(DatalabError):
    status = 409
    code = "conflict"


class PayloadTooLarge(DatalabError):
    status = 413
    code = "payload_too_large"


class JobRefused(DatalabError):
    """A node or a policy refused the job; nothing was released."""

    status = 403
    code = "job_refused"


class JobFailed(DatalabError):
    """A job could not complete (node down, timeout, error); nothing was released."""

    status = 502
    code = "job_failed"


class BudgetExhausted(DatalabError):
    """The analyst's privacy budget cannot pay for this query; nothing was run."""

    status = 403
    code = "budget_exhausted"


class TaskRefused(DatalabError):
    """Raised inside a node when it will not run a task (bad signature, unapproved, policy)."""

    status = 403
    code = "task_refused"


ERRORS_BY_CODE: dict[str, type[DatalabError]] = {
    cls.code: cls
    for cls in (
        DatalabError,
        BadRequest,
        InvalidParameters,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        JobRefused,
        JobFailed,
        BudgetExhausted,
        TaskRefused,
    )
}


def error_from_body(status: int, body: Any) -> DatalabError:
    """Rebuild the error a peer sent (used by the client and the node)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        cls = ERRORS_BY_CODE.get(str(err.get("code")), DatalabError)
        return cls(str(err.get("message", "")))
    return DatalabError(f"HTTP {status}: unexpected response")
