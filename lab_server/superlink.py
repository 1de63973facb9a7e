"""The hub's Flower SuperLink: one supervised subprocess beside the hub.

``SuperLink`` starts Flower's SuperLink (from the Flower runtime, ``datalab/flower_runtime.py``)
with the Fleet, Control and runtime APIs on one port — over TLS with SuperNode authentication
when the settings say so, registering the nodes' public keys it is given — restarts it if it
dies, and stops it, with its SuperExec and ServerApp children, when the hub stops. ``cli`` runs
Flower's ``flwr`` CLI against it (JSON answers): how the training runs (``training_runs.py``)
submit, follow and stop runs.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from datalab.flower_runtime import flower_bin, flower_env, free_port, stop_group
from lab_server.settings import HubSettings

log = logging.getLogger("datalab.hub.flower")

#: the SuperLink connection name in the CLI's config.toml.
LINK = "lab"
#: how long a restart of a crashed SuperLink waits (doubling, up to the maximum).
RESTART_DELAY_S = 1.0
RESTART_DELAY_MAX_S = 30.0


class SuperLink:
    """One SuperLink subprocess (Fleet, Control and runtime APIs on one port), supervised."""

    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self.dir = settings.state_dir / "flower"
        self.bin = flower_bin(settings.flower_bin)
        self.port = settings.flower_port or free_port(settings.host)
        self.address = settings.flower_public_address or f"{settings.host}:{self.port}"
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def home(self) -> Path:
        """FLWR_HOME of the hub's Flower processes and CLI (holds the CLI's config.toml)."""
        return self.dir / "home"

    def command(self) -> list[str]:
        s = self.settings
        cmd = [
            str(self.bin / "flower-superlink"),
            "--host",
            s.host,
            "--port",
            str(self.port),
            "--disable-runtime-dependency-installation",
            "--database",
            str(self.dir / "superlink.db"),
        ]
        if s.flower_tls:
            cmd += [
                "--ssl-ca-certfile",
                str(s.flower_ssl_ca_certfile),
                "--ssl-certfile",
                str(s.flower_ssl_certfile),
                "--ssl-keyfile",
                str(s.flower_ssl_keyfile),
            ]
        else:
            cmd += ["--insecure"]
        if s.flower_supernode_auth:
            cmd += ["--enable-supernode-auth"]
        return cmd

    def start(self, timeout: float = 60.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_cli_config()
        self._spawn()
        self.wait_ready(timeout)
        self.register_supernodes()
        self._thread = threading.Thread(target=self._supervise, name="superlink", daemon=True)
        self._thread.start()

    def _write_cli_config(self) -> None:
        s = self.settings
        lines = [
            "[superlink]",
            f'default = "{LINK}"',
            "",
            f"[superlink.{LINK}]",
            f'address = "{s.host}:{self.port}"',
        ]
        if s.flower_tls:
            lines.append(f'root-certificates = "{s.flower_ssl_ca_certfile}"')
        else:
            lines.append("insecure = true")
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _spawn(self) -> None:
        with self._lock:
            logfile = (self.dir / "superlink.log").open("ab")
            try:
                self._proc = subprocess.Popen(
                    self.command(),
                    stdout=logfile,
                    stderr=subprocess.STDOUT,
                    env=flower_env(self.bin, self.home),
                    cwd=self.dir,
                    start_new_session=True,  # its SuperExec and ServerApps share its group
                )
            finally:
                logfile.close()
        (self.dir / "superlink.pid").write_text(str(self._proc.pid), encoding="utf-8")
        log.info("SuperLink started on port %d (pid %d)", self.port, self._proc.pid)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self._proc
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the SuperLink exited with code {proc.returncode}")
            try:
                with socket.create_connection((self.settings.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the SuperLink did not listen on port {self.port} in {timeout:g} s")

    def register_supernodes(self, attempts: int = 20) -> list[str]:
        """Register each public key in ``flower_supernode_keys`` (``<agency>.pub``) with the
        SuperLink, named for its agency: with SuperNode authentication only these nodes may
        join. A key the SuperLink already holds (a restart) is logged and kept. The names of
        the keys registered now."""
        folder = self.settings.flower_supernode_keys
        if folder is None:
            return []
        registered = []
        for key in sorted(Path(folder).glob("*.pub")):
            for attempt in range(attempts):
                try:
                    self.cli("supernode", "register", str(key), LINK, "--name", key.stem)
                    registered.append(key.stem)
                    log.info("SuperNode key of %s registered", key.stem)
                    break
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    if "already" in str(exc).lower() or attempt == attempts - 1:
                        log.warning("SuperNode key %s not registered: %s", key.name, exc)
                        break
                    time.sleep(0.5)  # the Control API can lag the port by a moment
        return registered

    def _supervise(self) -> None:
        """Restart a SuperLink that died (runs in flight fail; their jobs say so)."""
        delay = RESTART_DELAY_S
        while not self._stopping.wait(0.5):
            proc = self._proc
            if proc is None or proc.poll() is None:
                continue
            log.error("the SuperLink exited with code %s; restarting", proc.returncode)
            stop_group(proc)
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, RESTART_DELAY_MAX_S)
            try:
                self._spawn()
                self.wait_ready(30.0)
                self.restarts += 1
                delay = RESTART_DELAY_S
            except (OSError, RuntimeError) as exc:
                log.error("SuperLink restart failed: %s", exc)

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            if self._proc is not None:
                stop_group(self._proc)
                (self.dir / "superlink.pid").unlink(missing_ok=True)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def cli(self, *args: str, timeout: float = 60.0) -> dict[str, Any]:
        """Run ``flwr <args> --format json`` against this SuperLink; its JSON answer."""
        done = subprocess.run(
            [str(self.bin / "flwr"), *args, "--format", "json"],
            capture_output=True,
            text=True,
            env=flower_env(self.bin, self.home),
            cwd=self.dir,
            timeout=timeout,
            check=False,
        )
        try:
            answer = json.loads(done.stdout[done.stdout.find("{") :])
        except ValueError:
            answer = {"success": False, "error-message": (done.stdout + done.stderr)[-500:]}
        if not answer.get("success", False):
            raise RuntimeError(str(answer.get("error-message", "flwr failed"))[-500:])
        return answer
