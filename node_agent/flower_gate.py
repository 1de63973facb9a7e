"""The node's Flower gate: a SuperExec that runs only the app hashes its agency approved.

Run by the node agent with the Flower runtime's Python (``.venv-flower``), beside a SuperNode
started with ``--isolation process``: the SuperNode then launches nothing itself, and this
process acquires each task from the SuperNode's runtime API and decides. A task whose FAB sha256
is not in the node agent's allow-list (``--allowed``, a JSON file the node agent derives from its
verified, agency-signed grants) is never installed or run: a *refuser* process (this script with
``--refuse``) takes the task and answers it with an error ("not approved"), so the server counts
the node as failed for that message instead of waiting for it, and the SuperNode's queue is not
left holding a task nobody will run. The refusal is appended to ``--refusals`` (JSON lines),
which the node agent reports to the hub over its signed channel.

The hash in a task is what the SuperLink *declares*; Flower installs the FAB's content without
checking it against that hash. So an approved task is run by this script too (``--run``): it
starts Flower's own ``flwr-clientapp`` with its installer wrapped, so the FAB's bytes are hashed
and must themselves be approved before anything is unpacked (a hub serving other bytes under an
approved hash gets "not approved", and nothing of the unapproved app is installed or run).

An approval also carries bounds on the recipe's parameters. The node agent restates them on the
run config (``bounds`` in ``--allowed``: run-config key → minimum, maximum, choices), and the
``--run`` wrapper checks the run config Flower hands the ClientApp against the bounds of the
FAB's own hash before anything is installed: a run outside them is refused like an unapproved
app, and the refusal names each parameter out of bounds (no data: the run config is the hub's).

Flower has no offline hash allowlist (``--trusted-entities`` needs Flower's online hub), so this
wraps Flower's own SuperExec loop and plugin (internal modules of flwr 1.42.0, pinned exactly).
Imports nothing of the lab: it runs in Flower's environment, not the lab's.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from flwr.supercore.superexec.executor import LaunchResult
from flwr.supercore.superexec.plugin import AutoExecPlugin

ALLOWED: Path
REFUSALS: Path
#: why this ``--run`` process's task is refused (set once its run config has been checked).
OUT_OF_BOUNDS: list[str] = []


def _allow_list() -> dict:
    try:
        return dict(json.loads(ALLOWED.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def allowed_hashes() -> dict[str, str]:
    """fab sha256 → recipe key, as the node agent last wrote them (none if unreadable)."""
    return dict(_allow_list().get("hashes", {}))


def allowed_bounds(fab_hash: str) -> dict[str, dict]:
    """The run-config bounds of the grant of ``fab_hash`` (none: unbounded)."""
    return dict(_allow_list().get("bounds", {}).get(fab_hash, {}))


def run_config_problems(config: dict, bounds: dict[str, dict]) -> list[str]:
    """Which run-config values fall outside ``bounds``, as readable messages (empty: within).

    A bounded key the run config lacks is a problem (fail closed); a ``list`` bound checks each
    comma-separated item against its choices."""
    problems: list[str] = []
    for key, bound in sorted(bounds.items()):
        if key not in config:
            problems.append(f"{key} is bounded by the approval but the run does not set it")
            continue
        value = config[key]
        values = [v for v in str(value).split(",") if v] if bound.get("list") else [value]
        for v in values:
            if "choices" in bound and v not in bound["choices"]:
                problems.append(f"{key}={v!r} is not among the approved {bound['choices']}")
            if isinstance(v, int | float) and not isinstance(v, bool):
                if "minimum" in bound and v < bound["minimum"]:
                    problems.append(f"{key}={v} is below the approved minimum {bound['minimum']}")
                if "maximum" in bound and v > bound["maximum"]:
                    problems.append(f"{key}={v} is above the approved maximum {bound['maximum']}")
    return problems


class GatedPlugin(AutoExecPlugin):
    """Flower's own plugin, launching a task only when its app hash is approved."""

    def launch_task(self, token, task):
        fab_hash = getattr(task, "fab_hash", "") or ""
        approved = bool(fab_hash) and fab_hash in allowed_hashes()
        if not approved:
            record_refusal(int(task.run_id), int(task.task_id), fab_hash)
        # approved: run it with the FAB's own bytes checked; otherwise answer "not approved"
        # with an error and exit; neither path installs an unapproved app
        command = [sys.executable, __file__, "--run" if approved else "--refuse"]
        command += ["--allowed", str(ALLOWED), "--refusals", str(REFUSALS), "--token", token]
        command += ["--runtime-api-address", self.runtime_api_address]
        command += ["--parent-pid", str(os.getpid())]
        if self.insecure:
            command.append("--insecure")
        elif self.root_certificates_path:
            command += ["--root-certificates", self.root_certificates_path]
        subprocess.Popen(command, start_new_session=False)
        return LaunchResult.accepted()


def record_refusal(
    run_id: int, task_id: int, fab_hash: str, problems: list[str] | None = None
) -> None:
    """One JSON line the node agent reports to the hub (it reads the file, signs, sends)."""
    record = {"run_id": run_id, "task_id": task_id, "fab_hash": fab_hash, "at": time.time()}
    if problems:
        record.update(problems=problems, recipe=allowed_hashes().get(fab_hash, ""))
    with REFUSALS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


class NotApproved(Exception):
    """Raised in place of installing an app whose hash the agency has not approved."""


def refuse() -> None:
    """Take one task as Flower's ``flwr-clientapp`` would, but raise before the app is
    installed: Flower's own error path then answers the server "not approved"."""
    runner = importlib.import_module("flwr.supernode.runtime.run_clientapp")
    cli = importlib.import_module("flwr.supernode.cli.flwr_clientapp")

    def not_approved(*_args, **_kwargs):
        raise NotApproved("this node's agency has not approved this app (FAB sha256)")

    runner.install_from_fab = not_approved
    cli.flwr_clientapp()


def checked(install):
    """``install`` (Flower's ``install_from_fab``), refusing FAB bytes whose own sha256 the
    agency has not approved, whatever hash the SuperLink declared for them."""

    def install_if_approved(fab_file, *args, **kwargs):
        content = fab_file if isinstance(fab_file, bytes) else Path(fab_file).read_bytes()
        actual = hashlib.sha256(content).hexdigest()
        if actual not in allowed_hashes():
            record_refusal(-1, -1, actual)
            raise NotApproved(f"FAB bytes hash to {actual}, which this agency has not approved")
        if OUT_OF_BOUNDS:
            raise NotApproved(
                "the run config is outside this agency's approval: " + "; ".join(OUT_OF_BOUNDS)
            )
        return install(fab_file, *args, **kwargs)

    return install_if_approved


def bounded(pull):
    """``pull`` (Flower's ``pull_task_input``), checking the task's run config against the
    bounds of the grant of the FAB's own bytes; a run outside them is recorded as refused and
    ``checked`` then refuses to install the app (so Flower answers the server with an error)."""

    def pull_and_check(*args, **kwargs):
        message, context, run, fab = pull(*args, **kwargs)
        actual = hashlib.sha256(fab.content).hexdigest()
        problems = run_config_problems(dict(context.run_config), allowed_bounds(actual))
        if problems:
            OUT_OF_BOUNDS[:] = problems
            record_refusal(int(context.run_id), -1, actual, problems)
        return message, context, run, fab

    return pull_and_check


def run_checked() -> None:
    """Flower's own ``flwr-clientapp``, with its FAB installer checked (see module doc)."""
    runner = importlib.import_module("flwr.supernode.runtime.run_clientapp")
    cli = importlib.import_module("flwr.supernode.cli.flwr_clientapp")
    runner.install_from_fab = checked(runner.install_from_fab)
    runner.pull_task_input = bounded(runner.pull_task_input)
    cli.flwr_clientapp()


def main() -> None:
    global ALLOWED, REFUSALS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allowed", required=True, type=Path)
    parser.add_argument("--refusals", required=True, type=Path)
    parser.add_argument("--refuse", action="store_true", help="answer one task: not approved")
    parser.add_argument("--run", action="store_true", help="run one task, FAB bytes checked")
    ours, rest = parser.parse_known_args()
    ALLOWED, REFUSALS = ours.allowed, ours.refusals
    sys.argv = [os.path.basename(sys.argv[0]), *rest]
    if ours.refuse:
        refuse()
        return
    if ours.run:
        run_checked()
        return
    REFUSALS.parent.mkdir(parents=True, exist_ok=True)
    # the packages re-export functions under their modules' names: import the modules
    loop = importlib.import_module("flwr.supercore.superexec.run_superexec")
    cli = importlib.import_module("flwr.supercore.cli.flower_superexec")
    loop.AutoExecPlugin = GatedPlugin
    cli.flower_superexec()


if __name__ == "__main__":
    main()
