"""In-process wake-ups for long-polls: a node waiting for tasks, a client waiting on a job.

The database is the truth; a notification only says "look again". Each key (``node:<agency>``,
``job:<id>``) has a generation counter. A waiter takes a ticket (the generation) *before* it
reads the database and then waits for the generation to move, so a change committed between its
read and its wait is never missed. ``notify`` may be called from worker threads (the DB work
runs in a threadpool); it hands the bump to the event loop, which alone touches the counters.
"""

from __future__ import annotations

import asyncio
import threading


def node_key(agency: str) -> str:
    return f"node:{agency}"


def job_key(job_id: str) -> str:
    return f"job:{job_id}"


class Notifier:
    def __init__(self) -> None:
        self._generations: dict[str, int] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the loop that serves requests (done on first use or at start)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def ticket(self, key: str) -> int:
        """The current generation of ``key``; call before reading the state you will wait on."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new loop (first use, or a test client's fresh portal): old events belong to
            # the old loop and cannot be awaited here.
            self._events.clear()
            self.bind(loop)
        return self._generations.get(key, 0)

    async def wait(self, key: str, ticket: int, timeout: float) -> bool:
        """Wait until ``key`` moves past ``ticket`` or ``timeout`` passes; True if it moved."""
        if self._generations.get(key, 0) != ticket:
            return True
        if timeout <= 0:
            return False
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return self._generations.get(key, 0) != ticket
        return True

    def notify(self, *keys: str) -> None:
        """Wake everyone waiting on any of ``keys`` (thread-safe)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # nobody has waited yet, so nobody can be waiting
        if threading.get_ident() == self._loop_thread:
            self._bump(keys)
        else:
            loop.call_soon_threadsafe(self._bump, keys)

    def _bump(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self._generations[key] = self._generations.get(key, 0) + 1
            event = self._events.pop(key, None)
            if event is not None:
                event.set()
