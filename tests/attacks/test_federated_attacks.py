"""Attacks on federated training.

1. The hub must never hold one district's update, only the SecAgg+ aggregate. Each node's
   ClientApp keeps a copy of its plain update inside the node (a test hook of the node's own
   operator); we look for those values in everything the hub stores or logs — its database, its
   SuperLink's state and logs, the ServerApp's result file — and must not find them, while the
   same search does find the aggregate the hub legitimately holds.
2. A hub (or anyone with the SuperLink's Control API) that pushes an app the agencies never
   approved — here the approved app with one line changed — gets refusals from every node, in
   the audit log, and no node runs it.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from datalab.client import Lab
from datalab.flower_runtime import fab_sha256, flower_bin, flower_env
from datalab_cli.local_lab import AUDITOR, LocalLab
from recipes.federated import APPS_DIR
from tests.support.federated import Scenario, recorded_updates, wait_for

pytestmark = pytest.mark.slow


def patterns(value: float) -> list[bytes]:
    """Ways a float can sit in a file: float64/float32 bytes, and its decimal text (the first
    10 significant characters of its shortest repr, a prefix of any longer printing)."""
    text = repr(float(value))
    digits = text.lstrip("-0.")
    prefix = text[: len(text) - len(digits) + 10] if len(digits) >= 10 else None
    out = [struct.pack("<d", value), struct.pack("<f", value)]
    if prefix is not None:
        out.append(prefix.encode())
    return out


def hub_files(lab: LocalLab) -> list[Path]:
    """Everything the hub side wrote: database, SuperLink state and logs, results, its log."""
    files = [p for p in lab.hub_state().rglob("*") if p.is_file()]
    files.append(lab.state_dir / "logs" / "hub.log")
    return [p for p in files if p.exists()]


def found_in(files: list[Path], needles: list[bytes]) -> list[tuple[str, bytes]]:
    hits = []
    for path in files:
        data = path.read_bytes()
        hits += [(str(path), n) for n in needles if n in data]
    return hits


def test_the_hub_holds_no_individual_update_only_the_aggregate(
    federated_scenario: Scenario, flower_lab: LocalLab
) -> None:
    assert flower_lab.flower_record_updates is not None
    updates = recorded_updates(flower_lab.flower_record_updates)
    trained = federated_scenario.model.rounds[0].round
    assert set(federated_scenario.kept) <= set(updates), f"no updates recorded: {updates.keys()}"
    d = len(federated_scenario.model.features) + 1
    secrets: list[bytes] = []
    for vectors in updates.values():
        for round_, vector in vectors:
            # a training round's coefficients are the node's own; every round's metrics are the
            # node's own (an evaluation round sends the global model back unchanged)
            private = vector if round_ == trained else vector[d:]
            # (an exact 0.0 is skipped: a term no row of the node has — e.g. a flag type's
            # interaction with a column that is always 0 for it — keeps weight 0 at every node
            # and in the aggregate, so it tells nothing, and its 8 zero bytes are in any file)
            for value in private:
                if value != 0.0:
                    secrets += patterns(value)
    assert secrets
    files = hub_files(flower_lab)
    assert any(p.name == "superlink.db" for p in files)
    assert found_in(files, secrets) == []
    # positive control: the same search finds the aggregate the hub does hold
    aggregate = [b for v in federated_scenario.model.coefficients for b in patterns(v)]
    assert found_in(files, aggregate), "the search cannot even find the released model"


def test_an_unapproved_app_pushed_through_the_superlink_is_refused_by_every_node(
    federated_scenario: Scenario, flower_lab: LocalLab, tmp_path: Path
) -> None:
    tampered = tmp_path / "fl_logistic"
    shutil.copytree(
        APPS_DIR / "fl_logistic", tampered, ignore=shutil.ignore_patterns("__pycache__")
    )
    client = tampered / "fl_logistic_app" / "client_app.py"
    client.write_text(client.read_text() + "\n# one changed line: not the reviewed code\n")
    bad_hash = fab_sha256(tampered)
    assert bad_hash != federated_scenario.fab_sha256
    # the Control API, as the hub's own CLI configuration reaches it: no job, no approval check
    home = flower_lab.hub_state() / "flower" / "home"
    bin_dir = flower_bin()
    done = subprocess.run(
        [str(bin_dir / "flwr"), "run", str(tampered), "lab", "--format", "json"],
        capture_output=True,
        text=True,
        env=flower_env(bin_dir, home),
        timeout=120,
        check=True,
    )
    run_id = done.stdout.split('"run-id": "')[1].split('"')[0]
    live = [*federated_scenario.kept, federated_scenario.refusing]
    try:
        with Lab(flower_lab.url, flower_lab.tokens[AUDITOR]) as auditor:

            def refusers() -> set[str] | None:
                entries = auditor.audit_entries()
                got = {
                    e.actor
                    for e in entries
                    if e.event == "flower_app_refused" and e.data["fab_sha256"] == bad_hash
                }
                return got if got >= set(live) else None

            got = wait_for(refusers, 120, "every live node to refuse the tampered app", step=1)
        assert got == set(live)
        for agency in live:
            apps = (flower_lab.node_state(agency) / "flower" / "home").glob("apps/*")
            assert not [a for a in apps if bad_hash[:8] in a.name]
    finally:
        subprocess.run(
            [str(bin_dir / "flwr"), "stop", run_id, "lab"],
            capture_output=True,
            env=flower_env(bin_dir, home),
            timeout=60,
            check=False,
        )
