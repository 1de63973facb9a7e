"""The federated training scenario the end-to-end and attack tests share (one run: slow).

One training job over the test city's district nodes (real hub + SuperLink, real node agents +
SuperNodes + gates): one district has revoked its approval of ``fl_logistic`` but kept its grant
of ``fl_linear`` (a FAB of its own: its gate must still refuse ``fl_logistic``), and another
district's machine dies in the middle of the first round (its agent, SuperNode and gate are
killed). The analyst's ``train`` call runs in a thread meanwhile.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from datalab.client import Lab
from datalab.federated_model import FederatedModel
from datalab_cli.local_lab import ANALYST, LocalLab
from node_agent.grant_store import ApprovalStore
from recipes.registry import default_registry

RECIPE = "fl_logistic"
VERSION = "1.0.0"


@dataclass(frozen=True)
class Scenario:
    model: FederatedModel
    seconds: float
    fab_sha256: str
    refusing: str
    killed: str
    kept: list[str]
    #: what the refusing district's gate still allowed when the job ran (fl_linear's FAB)
    refusing_allowed: dict[str, str]


def wait_for(check, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def allowed_hashes(lab: LocalLab, agency: str) -> dict[str, str]:
    path = lab.node_state(agency) / "flower" / "allowed.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["hashes"])
    except (OSError, ValueError, KeyError):
        return {}


def gate_log(lab: LocalLab, agency: str) -> Path:
    return lab.node_state(agency) / "flower" / "gate.log"


def app_started(lab: LocalLab, agency: str, since: int = 0) -> bool:
    """Whether ``agency``'s gate has launched an app process (the node is mid-round), after the
    first ``since`` bytes of its log (earlier training in the same lab wrote those)."""
    log = gate_log(lab, agency)
    if not log.exists():
        return False
    with log.open("rb") as f:
        f.seek(since)
        return b"flwr-clientapp" in f.read()


def run_scenario(lab: LocalLab) -> Scenario:
    agencies = lab.flower_agencies()
    assert len(agencies) >= 4, f"the scenario needs 4 district nodes, the city has {agencies}"
    fab = default_registry().get(RECIPE, VERSION).code_sha256()
    refusing, killed, kept = agencies[-1], agencies[-2], agencies[:-2]
    for agency in agencies:
        wait_for(lambda a=agency: fab in allowed_hashes(lab, a), 60, f"{agency}'s allow-list")
    # the refusing district withdraws fl_logistic only: its grant of fl_linear stays
    store = ApprovalStore(lab.node_state(refusing), refusing)
    assert store.get("fl_linear", VERSION) is not None
    store.revoke(RECIPE, VERSION, revoked_by=f"admin-{refusing}", reason="not here")
    wait_for(lambda: fab not in allowed_hashes(lab, refusing), 15, "the revocation to apply")
    refusing_allowed = allowed_hashes(lab, refusing)
    # earlier training in this lab (notebook 04 runs first) installed the app on every node and
    # wrote to the gates' logs: start the refusing node's app folder empty (so "it never
    # started the app" is about this run) and watch the killed node's log from here on
    shutil.rmtree(lab.node_state(refusing) / "flower" / "home" / "apps", ignore_errors=True)
    log = gate_log(lab, killed)
    seen = log.stat().st_size if log.exists() else 0
    started = time.monotonic()
    with Lab(lab.url, lab.tokens[ANALYST]) as analyst, ThreadPoolExecutor(1) as pool:
        training = pool.submit(analyst.train, RECIPE, rounds=1, progress=False, timeout=600)
        wait_for(lambda: app_started(lab, killed, seen) or training.done(), 180, "round 1 to start")
        lab.kill_node(killed)
        model = training.result()
    return Scenario(
        model=model,
        seconds=time.monotonic() - started,
        fab_sha256=fab,
        refusing=refusing,
        killed=killed,
        kept=kept,
        refusing_allowed=refusing_allowed,
    )


def recorded_updates(folder: Path) -> dict[str, list[tuple[int, list[float]]]]:
    """Per agency, the plain updates its ClientApp kept (round, vector): the test hook."""
    import numpy as np

    out: dict[str, list[tuple[int, list[float]]]] = {}
    for path in sorted(folder.glob("*/update-*.npy")):
        round_ = int(path.stem.rsplit("-", 1)[1])
        out.setdefault(path.parent.name, []).append((round_, np.load(path).tolist()))
    return out
