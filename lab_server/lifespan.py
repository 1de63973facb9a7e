"""What runs beside the requests: the deadline sweeper that times out unanswered tasks (and
drops the PSI messages of jobs that have ended)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from lab_server.services import Services

log = logging.getLogger("datalab.hub")

#: how often task deadlines are checked.
SWEEP_INTERVAL_S = 0.5


async def sweep_forever(services: Services, interval: float = SWEEP_INTERVAL_S) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(services.jobs.sweep_timeouts)
            # PSI messages live only as long as their job
            await run_in_threadpool(services.psi.purge_finished)
        except Exception as exc:  # keep sweeping: one bad pass must not stop all timeouts
            log.error("timeout sweep failed with %s", type(exc).__name__, exc_info=exc)


def lifespan(services: Services) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def run(_app: FastAPI) -> AsyncIterator[None]:
        services.notifier.bind(asyncio.get_running_loop())
        await run_in_threadpool(services.jobs.sweep_timeouts)
        # the SuperLink (when enabled) starts and stops with the hub
        await run_in_threadpool(services.trainer.start)
        sweeper = asyncio.create_task(sweep_forever(services))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await run_in_threadpool(services.trainer.stop)

    return run
