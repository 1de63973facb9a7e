"""The approval flow through real processes: an analyst requests, the agency admin signs and
uploads a grant (CLI), the node takes it from its poll after verifying it, jobs inside the
bounds run, jobs outside are refused naming the bound, and a revocation stops the next job.
"""

from __future__ import annotations

import re

import pytest

from datalab.client import Lab
from datalab.errors import Forbidden, InvalidParameters, JobRefused
from datalab_cli.local_lab import ANALYST, AUDITOR, LocalLab
from datalab_cli.main import main
from node_agent.log import read_entries, verify_log
from node_agent.settings import KEY_FILE, LOG_FILE

AGENCY = "civil_affairs"


def _cli(lab: LocalLab, person: str, *args: str) -> int:
    return main(["approvals", "--hub", lab.url, f"--token={lab.tokens[person]}", *args])


def _node_events(lab: LocalLab, agency: str) -> list[dict]:
    return list(read_entries(lab.node_state(agency) / LOG_FILE))


def test_request_approve_run_narrow_revoke(governed_lab: LocalLab, capsys) -> None:
    lab = governed_lab
    admin = f"admin-{AGENCY}"
    with Lab(lab.url, lab.tokens[ANALYST]) as analyst, Lab(lab.url, lab.tokens[admin]) as adm:
        # nothing is approved yet: the node refuses on its own
        with pytest.raises(JobRefused, match="not approved by agency civil_affairs"):
            analyst.run("key_groups", group="elderly", level="district")

        request = analyst.request_approval(
            "key_groups",
            agencies=[AGENCY],
            purpose="plan elderly care visits per district",
            bounds={"level": {"choices": ["district", "street"]}},
        )
        assert [d.state.value for d in request.decisions] == ["pending"]
        # the admin of the agency sees it; the analyst cannot approve
        assert request.request_id in {r.request_id for r in adm.approval_requests()}
        with pytest.raises(Forbidden):
            analyst.reject(request.request_id, "no")

        # the admin reviews code, manifest and output on mock data of the agency's schema
        capsys.readouterr()
        assert _cli(lab, admin, "show", request.request_id, "--code") == 0
        shown = capsys.readouterr().out
        assert "made-up rows" in shown and "class KeyGroupsByArea" in shown
        assert "  district\tn\n" in shown
        # the admin approves with narrower bounds, signing with the agency key on their side
        narrowed = '{"level": {"choices": ["district"]}}'
        key_dir = str(lab.node_state(AGENCY))
        assert (
            _cli(
                lab,
                admin,
                "approve",
                request.request_id,
                "--agency-key",
                key_dir,
                "--bounds",
                narrowed,
            )
            == 0
        )
        approval_id = re.search(r"approval ([0-9a-f]{32})", capsys.readouterr().out).group(1)

        # widening beyond the request is refused by the hub
        wide = '{"level": {"choices": ["district", "grid"]}}'
        assert (
            _cli(
                lab, admin, "approve", request.request_id, "--agency-key", key_dir, "--bounds", wide
            )
            == 1
        )
        assert "only narrow" in capsys.readouterr().err

        # inside the bounds the job runs without further clicks
        result = analyst.run("key_groups", group="elderly", level="district")
        assert len(result) > 0 and result["n"].notna().any()
        # outside, the node refuses and says which bound
        with pytest.raises(JobRefused, match=r"level='street' is not among the approved"):
            analyst.run("key_groups", group="elderly", level="street")

        # the admin revokes (signed); the next job is refused
        assert (
            _cli(
                lab,
                admin,
                "revoke",
                approval_id,
                "--agency-key",
                key_dir,
                "--reason",
                "purpose met",
            )
            == 0
        )
        with pytest.raises(JobRefused, match="not approved by agency civil_affairs"):
            analyst.run("key_groups", group="elderly", level="district")

    # both sides logged it: the node's own signed log, and the hub's audit log
    events = [e["event"] for e in _node_events(lab, AGENCY)]
    assert "approval_synced" in events and "task_refused" in events
    from datalab.signing import SigningKey

    node_key = SigningKey.from_pem((lab.node_state(AGENCY) / KEY_FILE).read_text()).public_key
    assert verify_log(lab.node_state(AGENCY) / LOG_FILE, node_key).ok
    with Lab(lab.url, lab.tokens[AUDITOR]) as auditor:
        audit = auditor.audit(outcome="approval")
        assert {"approval_requested", "approval_granted", "approval_revoked"} <= set(audit.event)
        granted = audit[audit.event == "approval_granted"].iloc[0]
        assert granted.data["bounds"] == {"level": {"choices": ["district"]}}


def test_an_admin_approves_only_for_their_own_agency(governed_lab: LocalLab, capsys) -> None:
    lab = governed_lab
    with Lab(lab.url, lab.tokens[ANALYST]) as analyst:
        request = analyst.request_approval(
            "key_groups", agencies=["health"], purpose="chronic illness per street"
        )
        with pytest.raises(InvalidParameters, match="no node is registered for 'nowhere'"):
            analyst.request_approval("key_groups", agencies=["nowhere"], purpose="x")
        with pytest.raises(InvalidParameters, match="no parameter 'colour'"):
            analyst.request_approval(
                "key_groups", agencies=["health"], purpose="x", bounds={"colour": {"choices": []}}
            )
    # civil affairs' admin, with civil affairs' key, cannot approve for health
    key_dir = str(lab.node_state(AGENCY))
    assert _cli(lab, f"admin-{AGENCY}", "approve", request.request_id, "--agency-key", key_dir) == 1
    assert "only for your own agency" in capsys.readouterr().err
    with Lab(lab.url, lab.tokens[f"admin-{AGENCY}"]) as other:
        assert request.request_id not in {r.request_id for r in other.approval_requests()}
    # health's admin rejects with a reason
    assert _cli(lab, "admin-health", "reject", request.request_id, "--reason", "too fine") == 0
    with Lab(lab.url, lab.tokens[ANALYST]) as analyst:
        (decision,) = analyst.approval_request(request.request_id).decisions
        assert decision.state.value == "rejected" and decision.reason == "too fine"
