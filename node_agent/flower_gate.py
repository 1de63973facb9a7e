"""The node's Flower gate: a SuperExec that runs only the app hashes its agency approved.

Run by the node agent with the Flower runtime's Python (``.venv-flower``), beside a SuperNode
started with ``--isolation process``: the SuperNode then launches nothing itself, and this
process acquires each task from the SuperNode's runtime API and decides. A task whose FAB sha256
is not in the node agent's allow-list (``--allowed``, a JSON file the node agent derives from its
verified, agency-signed grants) is not launched: the node stays silent (Flower's server sees a
timeout) and the refusal is appended to ``--refusals`` (JSON lines), which the node agent reports
to the hub over its signed channel.

Flower has no offline hash allowlist (``--trusted-entities`` needs Flower's online hub), so this
wraps Flower's own SuperExec loop and plugin (internal modules of flwr 1.42.0, pinned exactly).
Imports nothing of the lab: it runs in Flower's environment, not the lab's.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import ClassVar

from flwr.supercore.superexec.executor import LaunchResult
from flwr.supercore.superexec.plugin import AutoExecPlugin

ALLOWED: Path
REFUSALS: Path


def allowed_hashes() -> dict[str, str]:
    """fab sha256 → recipe key, as the node agent last wrote them (none if unreadable)."""
    try:
        return dict(json.loads(ALLOWED.read_text(encoding="utf-8")).get("hashes", {}))
    except (OSError, ValueError):
        return {}


class GatedPlugin(AutoExecPlugin):
    """Flower's own plugin, launching a task only when its app hash is approved."""

    refused_runs: ClassVar[set[int]] = set()

    def launch_task(self, token, task):
        fab_hash = getattr(task, "fab_hash", "") or ""
        if fab_hash and fab_hash in allowed_hashes():
            return super().launch_task(token, task)
        if task.run_id not in self.refused_runs:
            self.refused_runs.add(task.run_id)
            record = {
                "run_id": int(task.run_id),
                "task_id": int(task.task_id),
                "fab_hash": fab_hash,
                "at": time.time(),
            }
            with REFUSALS.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        return LaunchResult.failed(f"app sha256 {fab_hash[:12] or '(none)'} is not approved")


def main() -> None:
    global ALLOWED, REFUSALS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allowed", required=True, type=Path)
    parser.add_argument("--refusals", required=True, type=Path)
    ours, rest = parser.parse_known_args()
    ALLOWED, REFUSALS = ours.allowed, ours.refusals
    REFUSALS.parent.mkdir(parents=True, exist_ok=True)
    # the packages re-export functions under their modules' names: import the modules
    loop = importlib.import_module("flwr.supercore.superexec.run_superexec")
    cli = importlib.import_module("flwr.supercore.cli.flower_superexec")
    loop.AutoExecPlugin = GatedPlugin
    sys.argv = [os.path.basename(sys.argv[0]), *rest]
    cli.flower_superexec()


if __name__ == "__main__":
    main()
