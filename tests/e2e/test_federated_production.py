"""Flower's production configuration end to end, once: the SuperLink over TLS with SuperNode
authentication, each district node's ECDSA P-384 key registered by the hub, the SuperNodes
joining with the CA and their keys (all from the hub's and nodes' settings; certificates and
keys made in the test's tmp folder). One short DP training job runs across three districts —
one of which bounds epsilon in its grant and refuses the run — and a node whose key was never
registered cannot join. (The hub's own HTTP stays plain loopback here: a production node also
wants ``https://``, which the local lab does not serve.)"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from datalab.client import Lab
from datalab.flower_runtime import flower_bin, flower_env, free_port, stop_group
from datalab_cli.local_lab import ANALYST, AUDITOR, LocalLab
from node_agent.grant_store import ApprovalStore
from recipes.registry import default_registry
from tests.support.federated import allowed_hashes, wait_for
from tests.support.flower_tls import make_flower_tls

pytestmark = pytest.mark.slow

RECIPE, VERSION = "fl_logistic", "1.0.0"
EPSILON = 1.0
#: Flower's exit code for a SuperNode the SuperLink does not know (notes/flower-1.42.md; it is
#: what the SuperNode reports — the process itself exits with 1).
UNREGISTERED_EXIT = 305


@pytest.fixture(scope="module")
def production_lab(city: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLab]:
    state = tmp_path_factory.mktemp("flower-production")
    districts = sorted(p.name for p in city.glob("district_*"))[:3]
    assert len(districts) == 3, districts
    tls = make_flower_tls(state / "tls", registered=districts, unregistered=["intruder"])
    lab = LocalLab(
        city_dir=city,
        state_dir=state,
        agencies=districts,
        flower=True,
        flower_round_timeout_s=15.0,
        flower_tls=tls,
    )
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


def cmdline(pid_file: Path) -> list[str]:
    pid = pid_file.read_text().strip()
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_a_dp_training_job_runs_over_tls_with_registered_nodes_only(
    production_lab: LocalLab,
) -> None:
    lab = production_lab
    started = time.monotonic()
    districts = lab.flower_agencies()
    tls = lab.flower_tls
    assert tls is not None
    fab = default_registry().get(RECIPE, VERSION).code_sha256()

    # the production flags, from the settings: TLS + node authentication, no --insecure
    link = cmdline(lab.hub_state() / "flower" / "superlink.pid")
    assert "--enable-supernode-auth" in link and "--insecure" not in link
    assert link[link.index("--ssl-certfile") + 1] == str(tls / "superlink.crt")
    for agency in districts:
        pid_file = lab.node_state(agency) / "flower" / "supernode.pid"
        wait_for(pid_file.exists, 60, f"{agency}'s SuperNode")
        node = cmdline(pid_file)
        assert "--insecure" not in node
        assert node[node.index("--auth-supernode-private-key") + 1] == str(tls / f"{agency}.key")
        assert node[node.index("--root-certificates") + 1] == str(tls / "ca.crt")

    # a node whose key the hub never registered is turned away by the SuperLink
    bin_dir = flower_bin()
    said = tls / "intruder.log"
    intruder = subprocess.Popen(
        [
            *[str(bin_dir / "flower-supernode"), "--superlink", f"127.0.0.1:{lab.flower_port}"],
            *["--port", str(free_port()), "--root-certificates", str(tls / "ca.crt")],
            *["--auth-supernode-private-key", str(tls / "intruder.key")],
            *["--node-config", 'agency="intruder"'],
        ],
        stdout=said.open("wb"),
        stderr=subprocess.STDOUT,
        env=flower_env(bin_dir, tls / "intruder-home"),
        start_new_session=True,
    )
    try:
        # (its child processes keep an output pipe open after it exits: wait, then read a file)
        code = intruder.wait(timeout=90)
    finally:
        stop_group(intruder)
    output = said.read_text(errors="replace")
    assert code != 0 and f"Exit Code: {UNREGISTERED_EXIT}" in output, output[-2000:]
    superlink_log = (lab.hub_state() / "flower" / "superlink.log").read_text(errors="replace")
    assert "No SuperNode found with the given public key" in superlink_log

    # one district bounds epsilon in its grant: its gate must refuse this run's epsilon
    bounded = districts[-1]
    ApprovalStore(lab.node_state(bounded), bounded).approve(
        RECIPE, VERSION, fab, bounds={"epsilon": {"maximum": 0.5}}, approved_by="admin"
    )
    for agency in districts:
        wait_for(lambda a=agency: fab in allowed_hashes(lab, a), 60, f"{agency}'s allow-list")
    path = lab.node_state(bounded) / "flower" / "allowed.json"
    wait_for(lambda: '"maximum": 0.5' in path.read_text(), 15, "the bounded grant to apply")

    with Lab(lab.url, lab.tokens[ANALYST]) as analyst:
        before = analyst.budget().set_index("scope")["spent"].to_dict()
        model = analyst.train(RECIPE, rounds=1, epsilon=EPSILON, progress=False, timeout=600)
        after = analyst.budget().set_index("scope")["spent"].to_dict()
    print(
        f"production-config DP training (1 round + evaluation): {time.monotonic() - started:.0f} s"
    )

    # epsilon is in the model's provenance and debited from each district's dataset budget
    assert model.provenance.epsilon == EPSILON
    for agency in districts:
        scope = f"dataset:{agency}/verification_outcomes"
        assert after[scope] == pytest.approx(before.get(scope, 0.0) + EPSILON), scope
    assert [r.round for r in model.rounds] == [1, 2]
    assert all(r.nodes == 2 for r in model.rounds), model.rounds
    assert model.provenance.missing_agencies == [bounded]

    # the bounded district's refusal, with its reason, is in the hub's audit log
    with Lab(lab.url, lab.tokens[AUDITOR]) as auditor:
        refusals = [
            e
            for e in auditor.audit_entries()
            if e.event == "flower_app_refused" and e.data.get("job_id") == model.job_id
        ]
    assert {e.actor for e in refusals} == {bounded}
    assert refusals[0].data["reason"] == (
        f"node {bounded} refused app hash {fab}: run config outside agency {bounded}'s "
        f"approval of {RECIPE}@{VERSION}: epsilon={EPSILON} is above the approved maximum 0.5"
    )
