"""A request-body size limit enforced on the bytes actually received.

``Content-Length`` is checked first (cheap refusal), but a chunked or lying client is caught
too: the body is read up to the limit before the app sees it, then replayed. Bodies here are
small JSON documents (the default limit is 1 MiB), so buffering them costs nothing.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datalab.errors import BadRequest, DatalabError, PayloadTooLarge


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _reply(send, BadRequest("bad Content-Length header"))
            return
        if declared is not None and declared > self.max_bytes:
            await _reply(send, self._too_large())
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; let the app see the disconnect
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await _reply(send, self._too_large())
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body larger than the limit of {self.max_bytes} bytes")


def _content_length(scope: Scope) -> int | None:
    """The declared length, None if absent, -1 if malformed."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


async def _reply(send: Send, error: DatalabError) -> None:
    body: Any = json.dumps(error.to_body()).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
