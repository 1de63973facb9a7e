"""A whole lab on one machine: one hub process and one node process per agency.

Used by ``datalab demo``, the end-to-end tests and the benchmarks, so all three exercise the same
real processes talking HTTP on loopback. This is a development tool: it plays every role (it
creates the people's tokens on the hub and approves recipes as each agency's admin), which no
single party can do in a real deployment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from datalab.errors import DatalabError
from datalab.manifest import MANIFEST_FILE, AgencyManifest

#: The people the local lab creates on its hub.
ANALYST = "analyst"
AUDITOR = "auditor"
OPERATOR = "operator"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agency_folders(city_dir: Path) -> list[Path]:
    """Every agency folder of a synthetic city (those holding a manifest), sorted."""
    return sorted(p.parent for p in city_dir.glob(f"*/{MANIFEST_FILE}"))


@dataclass
class LocalLab:
    city_dir: Path
    state_dir: Path
    port: int = 0
    agencies: list[str] | None = None
    min_cell: int = 10
    node_timeout_s: float = 60.0
    #: recipes each agency's admin approves at start: "all" those its data can serve, or none.
    approve: bool = True
    log_dir: Path | None = None
    #: the hub address nodes are given (default: the hub itself; tests put a proxy here).
    node_hub_url: str | None = None
    #: federated training (opt-in, slow to start): the hub runs a Flower SuperLink and every
    #: node holding a dataset a training recipe reads runs a SuperNode behind its gate.
    flower: bool = False
    flower_port: int = 0
    #: seconds each SecAgg+ stage waits for silent nodes (a refusing or dead node costs this).
    flower_round_timeout_s: float = 30.0
    #: test hook: nodes keep a copy of each plain update under this folder (per agency).
    flower_record_updates: Path | None = None
    #: Flower's production configuration (TLS + SuperNode authentication): a folder holding
    #: ``ca.crt``, ``superlink.crt``/``superlink.key``, each agency's SuperNode key
    #: ``<agency>.key`` (OpenSSH) and the public keys the hub registers, ``public/<agency>.pub``.
    #: None: insecure loopback.
    flower_tls: Path | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[object] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hub_state(self) -> Path:
        return self.state_dir / "hub"

    def node_state(self, agency: str) -> Path:
        return self.state_dir / "nodes" / agency

    def agency_names(self) -> list[str]:
        names = [p.name for p in agency_folders(self.city_dir)]
        if self.agencies is not None:
            unknown = sorted(set(self.agencies) - set(names))
            if unknown:
                raise DatalabError(f"no agency folder for {', '.join(unknown)} in {self.city_dir}")
            names = [n for n in names if n in self.agencies]
        return names

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, progress: bool = False) -> LocalLab:
        if not self.port:
            self.port = free_port()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        agencies = self.agency_names()
        self._say(progress, f"hub on {self.url}")
        self._create_people(agencies)
        self.start_hub()
        if self.approve:
            self._say(progress, "each agency's admin approves the recipes its data can serve")
            for agency in agencies:
                self.approve_all(agency)
        self._say(progress, f"starting {len(agencies)} node agents")
        for agency in agencies:
            self.ensure_agency_key(agency)
            self.start_node(agency)
        self.wait_nodes_online(agencies)
        return self

    def start_hub(self) -> None:
        env = self._env()
        env.update(
            {
                "DATALAB_HUB_STATE_DIR": str(self.hub_state()),
                "DATALAB_HUB_NODE_TIMEOUT_S": str(self.node_timeout_s),
            }
        )
        args = ["server", "--state", str(self.hub_state()), "--host", "127.0.0.1"]
        args += ["--port", str(self.port)]
        if self.flower:
            self.flower_port = self.flower_port or free_port()
            args += ["--flower", "--flower-port", str(self.flower_port)]
            env["DATALAB_HUB_FLOWER_ROUND_TIMEOUT_S"] = str(self.flower_round_timeout_s)
            if self.flower_tls is not None:
                tls = self.flower_tls
                env["DATALAB_HUB_FLOWER_SSL_CA_CERTFILE"] = str(tls / "ca.crt")
                env["DATALAB_HUB_FLOWER_SSL_CERTFILE"] = str(tls / "superlink.crt")
                env["DATALAB_HUB_FLOWER_SSL_KEYFILE"] = str(tls / "superlink.key")
                env["DATALAB_HUB_FLOWER_SUPERNODE_AUTH"] = "true"
                env["DATALAB_HUB_FLOWER_SUPERNODE_KEYS"] = str(tls / "public")
        self._spawn("hub", args, env)
        self._wait_http(f"{self.url}/api/v1/health", "hub")

    def flower_agencies(self) -> list[str]:
        """The agencies that train: those holding a dataset some training recipe reads."""
        from recipes.federated import FlowerRecipe
        from recipes.registry import default_registry

        kinds = {
            role.kind
            for recipe in default_registry().all()
            if isinstance(recipe, FlowerRecipe)
            for role in recipe.manifest.datasets
        }
        return [
            a
            for a in self.agency_names()
            if kinds & {d.kind for d in AgencyManifest.load(self.city_dir / a).datasets}
        ]

    def flower_pids(self, agency: str) -> list[int]:
        """The process ids of ``agency``'s SuperNode and gate (each leads its process group)."""
        return [int(p.read_text()) for p in self._flower_pid_files(agency)]

    def _flower_pid_files(self, agency: str) -> list[Path]:
        return sorted((self.node_state(agency) / "flower").glob("*.pid"))

    def kill_node(self, agency: str) -> None:
        """The node's machine dies: its agent, SuperNode and gate are killed at once."""
        proc = self._procs.pop(f"node-{agency}", None)
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
        for pid in self.flower_pids(agency):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def start_node(self, agency: str) -> None:
        args = ["node", "run", "--agency", agency, "--data", str(self.city_dir / agency)]
        args += ["--hub", self.node_hub_url or self.url, "--state", str(self.node_state(agency))]
        args += ["--min-cell", str(self.min_cell)]
        env = self._env()
        if self.flower and agency in self.flower_agencies():
            args += ["--flower-superlink", f"127.0.0.1:{self.flower_port}"]
            if self.flower_record_updates is not None:
                folder = self.flower_record_updates / agency
                env["DATALAB_NODE_FLOWER_RECORD_UPDATES"] = str(folder)
            if self.flower_tls is not None:
                env["DATALAB_NODE_FLOWER_ROOT_CERTIFICATES"] = str(self.flower_tls / "ca.crt")
                env["DATALAB_NODE_FLOWER_AUTH_KEY"] = str(self.flower_tls / f"{agency}.key")
        self._spawn(f"node-{agency}", args, env)

    def stop_node(self, agency: str) -> None:
        self._terminate(f"node-{agency}")

    def stop_hub(self) -> None:
        self._terminate("hub")

    def stop(self) -> None:
        for name in list(self._procs):
            if name != "hub":
                self._terminate(name, wait=False)
        for name in list(self._procs):
            self._terminate(name)
        if self.flower:
            # a hub or node killed before it could stop its Flower processes leaves them behind
            from datalab.flower_runtime import kill_group

            leftovers = [*self.hub_state().glob("flower/*.pid")]
            leftovers += [p for a in self.agency_names() for p in self._flower_pid_files(a)]
            for pid_file in leftovers:
                kill_group(int(pid_file.read_text()))
        for fh in self._logs:
            fh.close()  # type: ignore[attr-defined]
        self._logs.clear()

    def __enter__(self) -> LocalLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ roles

    def _create_people(self, agencies: Iterable[str]) -> None:
        from datalab_cli.hub_command import create_user
        from lab_server.settings import HubSettings

        settings = HubSettings(state_dir=self.hub_state())
        people = [
            (ANALYST, "analyst", None),
            (AUDITOR, "auditor", None),
            (OPERATOR, "operator", None),
        ]
        people += [(f"admin-{a}", "agency_admin", a) for a in agencies]
        for name, role, agency in people:
            if name not in self.tokens:
                self.tokens[name] = create_user(settings, name, role, agency)

    def ensure_agency_key(self, agency: str) -> str:
        """The agency admin's signing key (kept, in the lab, beside the node's state); its public
        half is what the node pins to verify approvals. Returns the public key."""
        from datalab.grants import agency_key

        return agency_key(self.node_state(agency)).public_key

    def approve_all(self, agency: str) -> list[str]:
        """Approve, as the agency's admin, every recipe whose dataset kinds this agency holds."""
        from node_agent.grant_store import ApprovalStore
        from recipes.registry import default_registry

        manifest = AgencyManifest.load(self.city_dir / agency)
        kinds = {d.kind for d in manifest.datasets}
        store = ApprovalStore(self.node_state(agency), agency)  # signs with the agency key
        approved = []
        for recipe in default_registry().all():
            if kinds & {role.kind for role in recipe.manifest.datasets}:
                store.approve(
                    recipe.name,
                    recipe.version,
                    recipe.code_sha256(),
                    bounds={},
                    approved_by=f"admin-{agency}",
                    note="local lab",
                )
                approved.append(recipe.key)
        return approved

    def approve_reveal(self, agency: str, recipe_key: str) -> None:
        """Approve owner-only reveal of a matching recipe as ``agency``'s admin (both agencies
        of a match must do this before a ``mode="reveal"`` job runs)."""
        from node_agent.grant_store import ApprovalStore
        from recipes.registry import default_registry

        recipe = default_registry().get(recipe_key)
        ApprovalStore(self.node_state(agency), agency).approve(
            recipe.name,
            recipe.version,
            recipe.code_sha256(),
            bounds={"mode": {"choices": ["cardinality", "per_group", "reveal"]}},
            approved_by=f"admin-{agency}",
            note="local lab: owner-only reveal",
        )

    def verification_list(self, agency: str, job_id: str) -> Path:
        """Where ``agency``'s node keeps the verification list of a reveal job."""
        return self.node_state(agency) / "verification" / f"{job_id}.parquet"

    # ------------------------------------------------------------------ processes

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        if name in self._procs and self._procs[name].poll() is None:
            raise DatalabError(f"{name} is already running")
        log_path = (self.log_dir or self.state_dir / "logs") / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fh = log_path.open("ab")
        self._logs.append(fh)
        self._procs[name] = subprocess.Popen(
            [sys.executable, "-m", "datalab_cli.main", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def _terminate(self, name: str, *, wait: bool = True) -> None:
        proc = self._procs.get(name)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        if wait:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            del self._procs[name]

    def log_text(self, name: str) -> str:
        path = (self.log_dir or self.state_dir / "logs") / f"{name}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def _wait_http(self, url: str, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self._procs[name]
            if proc.poll() is not None:
                raise DatalabError(
                    f"{name} exited with code {proc.returncode}:\n" + self.log_text(name)[-3000:]
                )
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise DatalabError(f"{name} did not answer at {url} within {timeout:.0f} s")

    def wait_nodes_online(self, agencies: Iterable[str], timeout: float = 90.0) -> None:
        wanted = set(agencies)
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.tokens[ANALYST]}"}
        online: set[str] = set()
        while time.monotonic() < deadline:
            for agency in wanted - online:
                proc = self._procs.get(f"node-{agency}")
                if proc is not None and proc.poll() is not None:
                    raise DatalabError(
                        f"node {agency} exited with code {proc.returncode}:\n"
                        + self.log_text(f"node-{agency}")[-3000:]
                    )
            body = httpx.get(f"{self.url}/api/v1/catalogue", headers=headers, timeout=5).json()
            online = {a["agency"] for a in body if a["status"] == "online"} & wanted
            if online == wanted:
                return
            time.sleep(0.2)
        raise DatalabError(f"nodes not online after {timeout:.0f} s: {sorted(wanted - online)}")

    @staticmethod
    def _say(progress: bool, message: str) -> None:
        if progress:
            print(f"  · {message}", file=sys.stderr, flush=True)
