"""Who is calling: a person by bearer token, or a node by its signed request.

Both checks are dependencies so a route states its caller in its signature
(``CurrentUser``/``SignedNode`` in ``deps.py``) and cannot forget to authenticate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from datalab.errors import Forbidden, Unauthorized
from datalab.signing import NODE_HEADER, SIGNATURE_HEADER, TIME_HEADER, BadSignature, verify_request
from lab_server import users
from lab_server.permissions import Actor
from lab_server.services import Services


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


#: how long a token that was found stays trusted without a database read (unknown tokens are
#: always looked up, so a person created by the users CLI can sign in at once).
TOKEN_CACHE_S = 10.0
_MAX_CACHED_TOKENS = 1024


def current_person(request: Request) -> Actor:
    """The person whose bearer token this is; 401 otherwise. (Sync: runs in the threadpool.)"""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("sign in: send 'Authorization: Bearer <token>'")
    return person_for_token(services_of(request), token)


def person_for_token(services: Services, token: str) -> Actor:
    """The person holding ``token`` (cached briefly); 401 for an unknown token. Shared by the
    API's bearer header and the console's sign-in cookie."""
    cache: dict[str, tuple[float, Actor]] = services.token_cache
    digest = users.hash_token(token)
    hit = cache.get(digest)
    now = time.monotonic()
    if hit is not None and now - hit[0] < TOKEN_CACHE_S:
        return hit[1]
    with services.db.read() as session:
        actor = users.by_token(session, token)
    if actor is None:
        raise Unauthorized("unknown or revoked token")
    if len(cache) >= _MAX_CACHED_TOKENS:
        cache.clear()
    cache[digest] = (now, actor)
    return actor


@dataclass(frozen=True)
class NodeCaller:
    agency: str
    public_key: str


async def signed_node(request: Request) -> NodeCaller:
    """The node that signed this request (method, path, time, body hash) with its pinned key.

    401 when the signature is missing, stale or wrong, or the agency is unknown; 403 when a
    node signs for one agency and calls another agency's endpoint.
    """
    agency = request.headers.get(NODE_HEADER)
    timestamp = request.headers.get(TIME_HEADER)
    signature = request.headers.get(SIGNATURE_HEADER)
    if not agency or not timestamp or not signature:
        raise Unauthorized(
            f"node requests must be signed ({NODE_HEADER}, {TIME_HEADER}, {SIGNATURE_HEADER})"
        )
    body = await request.body()
    public_key = await run_in_threadpool(services_of(request).nodes.public_key, agency)
    if public_key is None:
        raise Unauthorized("unknown node; register it first")
    path = request.url.path
    candidates = [path]
    if request.url.query:
        candidates.append(f"{path}?{request.url.query}")
    for signed_path in candidates:
        try:
            verify_request(public_key, request.method, signed_path, timestamp, body, signature)
        except BadSignature as exc:
            last_error = str(exc)
            continue
        break
    else:
        raise Unauthorized(f"node request refused: {last_error}")
    if request.path_params.get("agency") not in (None, agency):
        raise Forbidden("a node may only use its own agency's endpoints")
    return NodeCaller(agency=agency, public_key=public_key)
