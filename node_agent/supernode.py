"""Federated training on the node: the agency's Flower SuperNode and the gate in front of it.

When ``flower_superlink`` is set, the node agent starts two processes from the Flower runtime
(``datalab/flower_runtime.py``) and keeps them running:

* a **SuperNode** (``--isolation process``) connected outbound to the hub's SuperLink, with node
  config = the agency, its data folder and the columns its policy lets training read (all but
  identifiers). With process isolation the SuperNode launches no app itself;
* the **gate** (``node_agent/flower_gate.py``), a SuperExec that launches an app only if its FAB
  sha256 is in ``allowed.json`` — written here from the agency's verified, signed grants (the
  same ``ApprovalStore`` every other recipe is checked against, so an approval pins the FAB
  hash and a revocation stops it within a second).

A refusal is invisible to Flower (the node just does not answer); the gate writes it to
``refusals.jsonl`` and this supervisor reports it to the hub over the node's signed channel,
where it lands in the audit log, and keeps it in the node's own log.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from datalab.errors import DatalabError, TaskRefused
from datalab.flower_runtime import flower_bin, flower_env, free_port, stop_group
from datalab.signing import SigningKey, sign_request
from datalab.wire import ApprovalGrant, CatalogueDataset, FlowerRefusal, Task
from node_agent.grant_store import ApprovalStore
from node_agent.log import LocalLog
from node_agent.settings import NodeSettings
from recipes.federated import FlowerRecipe, trainable
from recipes.registry import RecipeRegistry

logger = logging.getLogger("node_agent.supernode")

GATE_SCRIPT = Path(__file__).resolve().parent / "flower_gate.py"
#: how often the supervisor refreshes the allow-list, reads refusals and checks its processes.
TICK_S = 1.0
RESTART_DELAY_S = 2.0


class SuperNode:
    """The agency's SuperNode and gate, supervised in a background thread."""

    def __init__(
        self,
        settings: NodeSettings,
        registry: RecipeRegistry,
        approvals: ApprovalStore,
        datasets: list[CatalogueDataset],
        key: SigningKey,
        log: LocalLog,
    ) -> None:
        assert settings.flower_superlink
        self.settings = settings
        self.registry = registry
        self.approvals = approvals
        self.datasets = datasets
        self.key = key
        self.log = log
        self.bin = flower_bin(settings.flower_bin)
        self.dir = settings.state / "flower"
        self.allowed_path = self.dir / "allowed.json"
        self.refusals_path = self.dir / "refusals.jsonl"
        self.port = settings.flower_port or free_port()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._offset = 0
        #: runs already reported to the hub (a refused run is refused again each round)
        self._reported: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what the SuperNode and the gate are given

    def node_config(self) -> str:
        columns = sorted(set().union(*(trainable(d) for d in self.datasets)))
        values = {
            "agency": self.settings.agency,
            "data-path": str(self.settings.data_dir.resolve()),
            "trainable-columns": ",".join(columns),
        }
        if self.settings.flower_record_updates is not None:
            values["record-updates"] = str(self.settings.flower_record_updates)
        return " ".join(f"{k}={json.dumps(v)}" for k, v in values.items())

    def allowed(self) -> dict[str, str]:
        """FAB sha256 → recipe key, for every training recipe the agency's grants cover now."""
        return dict(self.allow_list()["hashes"])

    def allow_list(self) -> dict[str, Any]:
        """What the gate reads (``allowed.json``): ``hashes`` (FAB sha256 → recipe key) and
        ``bounds`` (FAB sha256 → its grant's bounds restated on the run config, which the gate
        checks each task's run config against before any training step; bounded grants only)."""
        granted = self._granted()
        return {
            "hashes": {fab: recipe.key for fab, (recipe, _) in granted.items()},
            "bounds": {
                fab: recipe.run_config_bounds(grant.bounds)
                for fab, (recipe, grant) in granted.items()
                if grant.bounds
            },
        }

    def _granted(self) -> dict[str, tuple[FlowerRecipe, ApprovalGrant]]:
        out: dict[str, tuple[FlowerRecipe, ApprovalGrant]] = {}
        for recipe in self.registry.all():
            if not isinstance(recipe, FlowerRecipe):
                continue
            try:
                code_sha256 = recipe.code_sha256()
                grant = self.approvals.check(_probe(self.settings.agency, recipe, code_sha256), {})
            except (TaskRefused, DatalabError):
                continue
            out[code_sha256] = (recipe, grant)
        return out

    def supernode_command(self) -> list[str]:
        s = self.settings
        cmd = [
            str(self.bin / "flower-supernode"),
            "--superlink",
            str(s.flower_superlink),
            "--port",
            str(self.port),
            "--isolation",
            "process",
            "--node-config",
            self.node_config(),
        ]
        if s.flower_root_certificates is not None:
            cmd += ["--root-certificates", str(s.flower_root_certificates)]
        else:
            cmd += ["--insecure"]
        if s.flower_auth_key is not None:
            cmd += ["--auth-supernode-private-key", str(s.flower_auth_key)]
        return cmd

    def gate_command(self) -> list[str]:
        return [
            str(self.bin / "python"),
            str(GATE_SCRIPT),
            "--allowed",
            str(self.allowed_path),
            "--refusals",
            str(self.refusals_path),
            "--runtime-api-address",
            f"127.0.0.1:{self.port}",
            "--insecure",
        ]

    # -- lifecycle

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._offset = self.refusals_path.stat().st_size if self.refusals_path.exists() else 0
        self._write_allowed()
        self._spawn("supernode", self.supernode_command())
        self._spawn("gate", self.gate_command())
        self._thread = threading.Thread(target=self._supervise, name="supernode", daemon=True)
        self._thread.start()
        logger.info(
            "node %s: SuperNode joined %s (runtime port %d)",
            self.settings.agency,
            self.settings.flower_superlink,
            self.port,
        )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        stop_group(*self._procs.values())
        for name in self._procs:
            (self.dir / f"{name}.pid").unlink(missing_ok=True)

    def _spawn(self, name: str, cmd: list[str]) -> None:
        logfile = (self.dir / f"{name}.log").open("ab")
        try:
            self._procs[name] = subprocess.Popen(
                cmd,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env=flower_env(self.bin, self.dir / "home"),
                cwd=self.dir,
                start_new_session=True,  # the gate's app processes share its group
            )
        finally:
            logfile.close()
        (self.dir / f"{name}.pid").write_text(str(self._procs[name].pid), encoding="utf-8")

    def _supervise(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self._write_allowed()
                self._report_refusals()
                for name, proc in list(self._procs.items()):
                    if proc.poll() is not None and not self._stop.is_set():
                        logger.error("%s exited with code %s; restarting", name, proc.returncode)
                        stop_group(proc)
                        time.sleep(RESTART_DELAY_S)
                        cmd = self.supernode_command() if name == "supernode" else None
                        self._spawn(name, cmd or self.gate_command())
            except Exception as exc:  # keep supervising: one bad tick must not stop the rest
                logger.error("SuperNode supervision failed: %s", exc, exc_info=exc)

    def _write_allowed(self) -> None:
        body = json.dumps(self.allow_list(), sort_keys=True)
        current = (
            self.allowed_path.read_text(encoding="utf-8") if self.allowed_path.exists() else ""
        )
        if body != current:
            tmp = self.allowed_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(body, encoding="utf-8")
            tmp.replace(self.allowed_path)

    def _report_refusals(self) -> None:
        """Post each new refusal to the hub (signed); on failure, retry at the next tick."""
        if not self.refusals_path.exists():
            return
        with self.refusals_path.open("rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            record = json.loads(line)
            refusal = FlowerRefusal(
                run_id=str(record["run_id"]),
                fab_sha256=str(record.get("fab_hash") or ""),
                reason=self.refusal_reason(record),
                at=float(record.get("at", time.time())),
            )
            if refusal.run_id not in self._reported:
                self.log.append("flower_app_refused", refusal.model_dump(mode="json"))
                logger.warning("%s", refusal.reason)
                self._post(refusal)
                self._reported.add(refusal.run_id)
            self._offset += len(line) + 1

    def refusal_reason(self, record: dict[str, Any]) -> str:
        """What the hub's audit log says of one of the gate's refusals (no data, no row)."""
        agency = self.settings.agency
        fab = str(record.get("fab_hash") or "") or "(none)"
        problems = [str(p) for p in record.get("problems") or []]
        if problems:
            return (
                f"node {agency} refused app hash {fab}: run config outside agency {agency}'s "
                f"approval of {record.get('recipe') or 'the app'}: " + "; ".join(problems)
            )
        return f"node {agency} refused app hash {fab}: not approved by agency {agency}"

    def _post(self, refusal: FlowerRefusal) -> None:
        path = f"/api/v1/nodes/{self.settings.agency}/flower/refusals"
        body = refusal.model_dump_json().encode()
        headers = sign_request(self.key, self.settings.agency, "POST", path, body)
        headers["Content-Type"] = "application/json"
        response = httpx.post(
            f"{self.settings.hub_url}{path}", content=body, headers=headers, timeout=10
        )
        response.raise_for_status()


def _probe(agency: str, recipe: FlowerRecipe, code_sha256: str) -> Task:
    """A stand-in task for the approval check: which recipe, version and hash would run."""
    now = time.time()
    return Task(
        task_id="flower-gate",
        job_id="flower-gate",
        agency=agency,
        dataset="",
        recipe=recipe.name,
        version=recipe.version,
        code_sha256=code_sha256,
        params={},
        issued_at=now,
        expires_at=now,
        nonce=secrets.token_hex(8),
    )
