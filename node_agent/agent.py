"""The long-running node agent: register with the hub, long-poll for tasks, run them, post the
signed partials — over outbound HTTP only, so the agency opens no inbound port.

The HTTP exchanges are the four small functions at the top (one per endpoint the node calls), so
a reviewer can check exactly what leaves the node: its catalogue (no rows), signed requests, and
signed partials. The loop below them survives a hub that is down (it retries with backoff and
says so in one log line) and stops cleanly on SIGTERM/SIGINT, letting running tasks finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable
from typing import Any

import httpx

from datalab import __version__
from datalab.errors import Conflict, DatalabError, Forbidden, Unauthorized, error_from_body
from datalab.signing import SigningKey, load_or_create_key, sign_request
from datalab.wire import (
    AgencyApprovals,
    AgencyKey,
    AuditReceipt,
    CatalogueDataset,
    HubInfo,
    NodeRegistration,
    RegistrationAccepted,
    SignedPartial,
    SignedRegistration,
    SignedTask,
)
from node_agent.connector import Connector, DuckDBConnector
from node_agent.executor import Executor
from node_agent.grant_store import ApprovalStore
from node_agent.log import LocalLog
from node_agent.psi_exchange import PsiParty
from node_agent.psi_min_change import MinimumChange
from node_agent.receipts import ReceiptKeeper
from node_agent.replay import NonceStore
from node_agent.settings import NodeSettings
from node_agent.supernode import SuperNode
from node_agent.trust import HubKeyMismatch, check_offered, pin_first_use, trusted_key
from recipes.registry import RecipeRegistry

logger = logging.getLogger("node_agent")

API = "/api/v1"
#: Seconds added to the long-poll wait before the client gives up on a response.
POLL_MARGIN_S = 10.0
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
#: How long a shutdown waits for running tasks to finish and post their partials.
SHUTDOWN_GRACE_S = 30.0
#: How long after a task's expiry the node still tries to deliver its partial.
POST_AFTER_EXPIRY_S = 60.0


# ------------------------------------------------------------------ the HTTP calls


def _check(response: httpx.Response) -> Any:
    """The JSON body of a 2xx response; otherwise the hub's error, rebuilt as its class."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        raise error_from_body(response.status_code, body)
    return body


def _signed_headers(key: SigningKey, agency: str, method: str, url: str, body: bytes) -> dict:
    """Headers that authenticate a request; the signed path is the URL's path without query."""
    return sign_request(key, agency, method, httpx.URL(url).path, body)


async def fetch_hub_info(client: httpx.AsyncClient, hub_url: str) -> HubInfo:
    """GET /hub: the hub's public key (used only for development trust-on-first-use)."""
    return HubInfo.model_validate(_check(await client.get(f"{hub_url}{API}/hub")))


async def register(
    client: httpx.AsyncClient,
    settings: NodeSettings,
    key: SigningKey,
    datasets: list[CatalogueDataset],
) -> RegistrationAccepted:
    """POST /nodes/register: the node's public key and catalogue (never rows), signed."""
    registration = NodeRegistration(
        agency=settings.agency,
        public_key=key.public_key,
        version=__version__,
        min_cell=settings.min_cell,
        datasets=datasets,
    )
    signed = SignedRegistration(
        registration=registration,
        # by alias: a column's class travels as "class" (the manifest's own spelling)
        signature=key.sign_value(registration.model_dump(mode="json", by_alias=True)),
    )
    response = await client.post(
        f"{settings.hub_url}{API}/nodes/register",
        content=signed.model_dump_json(by_alias=True).encode(),
        headers={
            "Authorization": f"Bearer {settings.enrolment_token}",
            "Content-Type": "application/json",
        },
    )
    return RegistrationAccepted.model_validate(_check(response))


async def poll_tasks(
    client: httpx.AsyncClient, settings: NodeSettings, key: SigningKey
) -> list[SignedTask]:
    """GET /nodes/{agency}/tasks?wait=S: long-poll for this node's tasks (signed request)."""
    url = f"{settings.hub_url}{API}/nodes/{settings.agency}/tasks"
    wait = int(settings.poll_wait_s)
    response = await client.get(
        url,
        params={"wait": wait},
        headers=_signed_headers(key, settings.agency, "GET", url, b""),
        timeout=httpx.Timeout(10.0, read=wait + POLL_MARGIN_S),
    )
    return [SignedTask.model_validate(item) for item in _check(response)]


async def post_partial(
    client: httpx.AsyncClient,
    settings: NodeSettings,
    key: SigningKey,
    partial: SignedPartial,
    since: int = 0,
) -> AuditReceipt | None:
    """POST /nodes/{agency}/partials: one signed partial (the hub accepts it idempotently).

    Returns the hub's audit receipt for it (consistency proven from tree size ``since``)."""
    url = f"{settings.hub_url}{API}/nodes/{settings.agency}/partials"
    body = partial.model_dump_json().encode()
    headers = _signed_headers(key, settings.agency, "POST", url, body)
    headers["Content-Type"] = "application/json"
    answer = _check(await client.post(url, content=body, headers=headers, params={"since": since}))
    receipt = answer.get("receipt") if isinstance(answer, dict) else None
    return AuditReceipt.model_validate(receipt) if receipt else None


async def fetch_approvals(
    client: httpx.AsyncClient, settings: NodeSettings, key: SigningKey
) -> AgencyApprovals:
    """GET /nodes/{agency}/approvals: the agency-signed grants and revocations the hub relays.

    The node trusts none of it until each item verifies against its pinned agency key."""
    url = f"{settings.hub_url}{API}/nodes/{settings.agency}/approvals"
    response = await client.get(url, headers=_signed_headers(key, settings.agency, "GET", url, b""))
    return AgencyApprovals.model_validate(_check(response))


async def post_agency_key(
    client: httpx.AsyncClient, settings: NodeSettings, key: SigningKey, agency_key: str
) -> None:
    """POST /nodes/{agency}/agency-key: which key signs this agency's approvals (public)."""
    url = f"{settings.hub_url}{API}/nodes/{settings.agency}/agency-key"
    body = AgencyKey(public_key=agency_key).model_dump_json().encode()
    headers = _signed_headers(key, settings.agency, "POST", url, body)
    headers["Content-Type"] = "application/json"
    _check(await client.post(url, content=body, headers=headers))


# ------------------------------------------------------------------ the loop


class FatalHubError(Exception):
    """The hub refused this node in a way retrying cannot fix (wrong token, key conflict)."""


class NodeAgent:
    """One agency's node: owns its connector, stores and HTTP client for its lifetime."""

    def __init__(
        self,
        settings: NodeSettings,
        *,
        registry: RecipeRegistry,
        connector: Connector | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.key = load_or_create_key(settings.key_path)
        self.connector = connector or DuckDBConnector(
            settings.data_dir, threads=settings.duckdb_threads
        )
        self.log = LocalLog(settings.log_path, self.key)
        self.approvals = ApprovalStore(settings.state, settings.agency)
        self.nonces = NonceStore(settings.nonces_path)
        self.receipts = ReceiptKeeper(settings.state, self.log, lambda: trusted_key(settings))
        self.psi_history = MinimumChange(settings.state / "psi-history.sqlite")
        self._transport = transport
        self._stop = asyncio.Event()
        self._executor: Executor | None = None
        #: the agency's Flower SuperNode and gate (federated training), once registered.
        self._supernode: SuperNode | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.max_concurrent_tasks)
        self._post_lock = asyncio.Lock()

    def stop(self) -> None:
        """Ask the loop to finish: no new polls; running tasks complete and post."""
        if not self._stop.is_set():
            logger.info("node %s: shutting down", self.settings.agency)
        self._stop.set()

    async def run(self) -> int:
        """Run until stopped; 0 on a clean shutdown, 1 when the hub refuses this node."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stop)
        async with httpx.AsyncClient(transport=self._transport, timeout=30.0) as client:
            try:
                await self._loop(client)
                return 0
            except (FatalHubError, HubKeyMismatch) as exc:
                logger.error("node %s: %s", self.settings.agency, exc)
                return 1
            finally:
                await self._drain()
                if self._supernode is not None:
                    await asyncio.to_thread(self._supernode.stop)
                self.nonces.close()
                self.psi_history.close()
                self.connector.close()

    async def _loop(self, client: httpx.AsyncClient) -> None:
        delay = BACKOFF_START_S
        registered = False
        while not self._stop.is_set():
            try:
                if not registered:
                    await self._register(client)
                    registered = True
                # poll only when a slot is free, so tasks do not queue here past their expiry
                stopped, _ = await self._until_stopped(self._slots.acquire())
                if stopped:
                    return
                self._slots.release()
                stopped, tasks = await self._until_stopped(
                    poll_tasks(client, self.settings, self.key)
                )
                if stopped:
                    return
                delay = BACKOFF_START_S
                if tasks:
                    # before any task runs: take the latest grants and revocations, so a
                    # revocation made a moment ago stops this very task
                    await self._sync_approvals(client)
                for signed in tasks:
                    job = asyncio.create_task(self._handle(client, signed))
                    self._running.add(job)
                    job.add_done_callback(self._running.discard)
            except Unauthorized as exc:
                if not registered:
                    raise FatalHubError(f"the hub refused the enrolment token: {exc}") from exc
                logger.warning("hub no longer knows this node (%s); registering again", exc)
                registered = False
            except (Conflict, Forbidden) as exc:
                raise FatalHubError(f"the hub refused this node: {exc}") from exc
            except (httpx.TransportError, DatalabError) as exc:
                logger.warning(
                    "hub unreachable at %s (%s); retrying in %.0f s",
                    self.settings.hub_url,
                    _describe(exc),
                    delay,
                )
                await self._until_stopped(asyncio.sleep(delay))
                delay = min(delay * 2, BACKOFF_MAX_S)

    async def _register(self, client: httpx.AsyncClient) -> None:
        pinned = trusted_key(self.settings)
        if pinned is None:
            info = await fetch_hub_info(client, self.settings.hub_url)
            pinned = pin_first_use(self.settings, info.public_key)
            logger.warning("trusting the hub key on first use (development): %s", pinned)
        datasets = self.connector.datasets()
        accepted = await register(client, self.settings, self.key, datasets)
        check_offered(pinned, accepted.hub_public_key, "registration answer")
        self._executor = Executor(
            settings=self.settings,
            connector=self.connector,
            registry=self.registry,
            approvals=self.approvals,
            nonces=self.nonces,
            log=self.log,
            node_key=self.key,
            hub_public_key=pinned,
            psi=PsiParty(
                settings=self.settings,
                connector=self.connector,
                node_key=self.key,
                log=self.log,
                history=self.psi_history,
            ),
        )
        self.nonces.purge()
        agency_public = self.approvals.public_key()
        if agency_public is not None:
            try:
                await post_agency_key(client, self.settings, self.key, agency_public)
            except DatalabError as exc:
                logger.warning("the hub did not take the agency key: %s", _describe(exc))
        await self._sync_approvals(client)
        if self.settings.flower_superlink and self._supernode is None:
            # after registering: the SuperNode reports its gate's refusals as this node
            self._supernode = SuperNode(
                self.settings, self.registry, self.approvals, datasets, self.key, self.log
            )
            await asyncio.to_thread(self._supernode.start)
        self.log.append(
            "registered",
            {
                "hub_url": self.settings.hub_url,
                "hub_public_key": pinned,
                "node_public_key": self.key.public_key,
                "datasets": [d.name for d in datasets],
                "min_cell": self.settings.min_cell,
            },
        )
        logger.info(
            "node %s registered with %s (%d datasets)",
            self.settings.agency,
            self.settings.hub_url,
            len(datasets),
        )

    async def _sync_approvals(self, client: httpx.AsyncClient) -> None:
        """Store the relayed grants that verify; log (and remember) the ones refused."""
        try:
            bundle = await fetch_approvals(client, self.settings, self.key)
        except DatalabError as exc:
            logger.warning("could not fetch approvals from the hub: %s", _describe(exc))
            return
        changes, refusals = await asyncio.to_thread(self.approvals.sync, bundle)
        for change in changes:
            self.log.append("approval_synced", {"change": change})
            logger.info("approvals: %s", change)
        for reason in refusals:
            self.log.append("approval_refused", {"reason": reason})
            logger.warning("approval relayed by the hub refused: %s", reason)

    async def _handle(self, client: httpx.AsyncClient, signed: SignedTask) -> None:
        """Run one task in a worker thread (the engine releases the GIL) and post its answer."""
        assert self._executor is not None
        async with self._slots:
            partial = await asyncio.to_thread(self._executor.execute, signed)
        logger.info(
            "task %s (%s@%s): %s%s",
            signed.task.task_id,
            signed.task.recipe,
            signed.task.version,
            partial.partial.status.value,
            f" — {partial.partial.reason}" if partial.partial.reason else "",
        )
        delay = BACKOFF_START_S
        while True:
            try:
                # one post at a time, so each receipt's consistency proof starts from the
                # checkpoint the previous one left
                async with self._post_lock:
                    since = self.receipts.last_size()
                    receipt = await post_partial(client, self.settings, self.key, partial, since)
                    self.receipts.take(receipt, partial)
                return
            except (Forbidden, Conflict, Unauthorized) as exc:
                logger.warning("hub refused the partial of task %s: %s", signed.task.task_id, exc)
                return
            except (httpx.TransportError, DatalabError) as exc:
                if time.time() > signed.task.expires_at + POST_AFTER_EXPIRY_S:
                    logger.error(
                        "giving up posting task %s: it expired and the hub has timed it out",
                        signed.task.task_id,
                    )
                    return
                logger.warning(
                    "could not post task %s (%s); retrying in %.0f s",
                    signed.task.task_id,
                    _describe(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)

    async def _until_stopped(self, awaitable: Awaitable[Any]) -> tuple[bool, Any]:
        """``(False, result)`` of ``awaitable``, or ``(True, None)`` when a stop came first (the
        awaitable is then cancelled): a long-poll must not delay a shutdown by 20 seconds."""
        work = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            stopper.cancel()
            return False, work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        return True, None

    async def _drain(self) -> None:
        if not self._running:
            return
        logger.info("waiting for %d running task(s) to finish", len(self._running))
        _, pending = await asyncio.wait(set(self._running), timeout=SHUTDOWN_GRACE_S)
        for job in pending:
            job.cancel()


def _describe(exc: BaseException) -> str:
    """One line naming what went wrong, for the operator's console."""
    if isinstance(exc, DatalabError):
        return f"{exc.code}: {exc.message}"
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")
