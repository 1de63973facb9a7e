"""A hub that misbehaves: it speaks the node protocol but sends whatever tasks a test queues.

It plays a compromised (or impersonated) hub against a REAL node process, so the attack tests can
check that the node itself refuses tasks that no honest hub would send.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from datalab.signing import SigningKey
from datalab.wire import (
    HubInfo,
    RegistrationAccepted,
    SignedPartial,
    SignedRegistration,
    SignedTask,
)


class RogueHub:
    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.tasks: queue.Queue[SignedTask] = queue.Queue()
        self.partials: queue.Queue[SignedPartial] = queue.Queue()
        self.registrations: list[SignedRegistration] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                if self.path.startswith("/api/v1/health"):
                    self._send(200, {"status": "ok", "version": "rogue"})
                elif self.path.startswith("/api/v1/hub"):
                    info = HubInfo(version="rogue", public_key=hub.key.public_key)
                    self._send(200, info.model_dump(mode="json"))
                elif "/tasks" in self.path:
                    try:
                        task = hub.tasks.get(timeout=1.0)
                        self._send(200, [task.model_dump(mode="json")])
                    except queue.Empty:
                        self._send(200, [])
                else:
                    self._send(404, {"error": {"code": "not_found", "message": self.path}})

            def do_POST(self) -> None:
                body = self._body()
                path = urlsplit(self.path).path  # the node adds ?since= to its partials
                if path.endswith("/nodes/register"):
                    reg = SignedRegistration.model_validate_json(body)
                    hub.registrations.append(reg)
                    accepted = RegistrationAccepted(
                        agency=reg.registration.agency, hub_public_key=hub.key.public_key
                    )
                    self._send(200, accepted.model_dump(mode="json"))
                elif path.endswith("/partials"):
                    hub.partials.put(SignedPartial.model_validate_json(body))
                    self._send(200, {"accepted": True})
                else:
                    self._send(404, {"error": {"code": "not_found", "message": self.path}})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_registered(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.registrations and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.registrations:
            raise TimeoutError("the node never registered")

    def send(self, task: SignedTask, timeout: float = 20.0) -> SignedPartial | None:
        """Queue a task and return the node's answer (None if it sent none in time)."""
        self.tasks.put(task)
        try:
            return self.partials.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
