"""The web console in headless Chromium (Debian's ``chromium`` driven by Playwright), against the
live governed lab: each role signs in with its token and does the real thing.

Screenshots go to ``$DATALAB_SCREENSHOT_DIR`` when set (that is how docs/img is made), else to
the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from datalab.client import Lab
from datalab.errors import JobRefused
from datalab_cli.local_lab import ANALYST, AUDITOR, OPERATOR, LocalLab

playwright_sync = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (scripts/test does it)"
)

AGENCY = "civil_affairs"
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    # Playwright gives every launch a fresh temporary profile (its own --user-data-dir)
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("DATALAB_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _signed_in(browser, lab: LocalLab, person: str):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{lab.url}/console/sign-in")
    page.fill("input[name=token]", lab.tokens[person])
    page.click("button[type=submit]")
    return page


def test_admin_approves_then_revokes_and_the_analyst_sees_both(
    browser, governed_lab: LocalLab, shots: Path
) -> None:
    lab = governed_lab
    with Lab(lab.url, lab.tokens[ANALYST]) as analyst:
        request = analyst.request_approval(
            "key_groups",
            agencies=[AGENCY],
            purpose="elderly care visits per district (console)",
            bounds={"level": {"choices": ["district", "street"]}},
        )
        admin = _signed_in(browser, lab, f"admin-{AGENCY}")
        assert admin.url.endswith("/console/queue")
        admin.click(f"a[href='/console/queue/{request.request_id}']")
        assert "class KeyGroupsByArea" in admin.inner_text("#code")
        assert '"name": "key_groups"' in admin.inner_text("#manifest")
        assert "made-up rows" in admin.inner_text("main") and admin.locator("#mock tr").count() > 1
        admin.screenshot(path=str(shots / "console-review.png"), full_page=True)
        admin.fill("textarea[name=bounds]", '{"level": {"choices": ["district"]}}')
        admin.set_input_files("input[name=keyfile]", str(lab.node_state(AGENCY) / "agency_key.pem"))
        admin.click("#approve")
        admin.wait_for_selector("#approval-id")
        assert admin.inner_text("#decision") == "approved"

        result = analyst.run("key_groups", group="elderly", level="district")
        assert result["n"].notna().any()
        with pytest.raises(JobRefused, match="level='street' is not among the approved"):
            analyst.run("key_groups", group="elderly", level="street")

        admin.fill("form.revoke input[name=reason]", "purpose met")
        admin.set_input_files(
            "form.revoke input[name=keyfile]", str(lab.node_state(AGENCY) / "agency_key.pem")
        )
        admin.click("#revoke")
        admin.wait_for_url("**done=revoked")
        assert admin.inner_text("#decision") == "revoked"
        with pytest.raises(JobRefused, match="not approved by agency civil_affairs"):
            analyst.run("key_groups", group="elderly", level="district")


def test_auditor_filters_the_log_sees_verification_pass_and_exports(
    browser, governed_lab: LocalLab, shots: Path
) -> None:
    page = _signed_in(browser, governed_lab, AUDITOR)
    assert page.url.endswith("/console/audit")
    assert "Verification: passed" in page.inner_text("#verification")
    page.fill("input[name=outcome]", "approval")
    page.fill("input[name=analyst]", ANALYST)
    page.click("#filter")  # a GET form: wait for the filtered page, not the one before it
    page.wait_for_url(re.compile(rf"[?&]analyst={re.escape(ANALYST)}(&|$)"))
    events = page.locator("#log tr td:nth-child(3)").all_inner_texts()
    assert events and set(events) <= {"approval_requested"}
    page.fill("input[name=analyst]", "")
    page.click("#filter")
    page.wait_for_url(re.compile(r"[?&]analyst=(&|$)"))
    events = set(page.locator("#log tr td:nth-child(3)").all_inner_texts())
    assert {"approval_requested", "approval_granted", "approval_revoked"} <= events
    page.screenshot(path=str(shots / "console-audit.png"), full_page=True)
    href = page.get_attribute("#export-csv", "href") or ""
    csv = page.request.get(f"{governed_lab.url}{href}")
    assert csv.ok and csv.text().splitlines()[0].startswith("seq,ts,event,actor,data")
    assert all("approval" in line for line in csv.text().splitlines()[1:])


def test_operator_sees_nodes_with_last_contact_and_users(
    browser, governed_lab: LocalLab, shots: Path
) -> None:
    page = _signed_in(browser, governed_lab, OPERATOR)
    assert page.url.endswith("/console/nodes")
    nodes = page.inner_text("#nodes")
    assert AGENCY in nodes and "health" in nodes and "never" not in nodes
    assert f"admin-{AGENCY}" in page.inner_text("#users")
    page.screenshot(path=str(shots / "console-nodes.png"), full_page=True)


def test_an_analyst_cannot_reach_the_approval_pages(browser, governed_lab: LocalLab) -> None:
    with Lab(governed_lab.url, governed_lab.tokens[ANALYST]) as analyst:
        request = analyst.request_approval(
            "key_groups", agencies=[AGENCY], purpose="can I approve my own request?"
        )
    page = _signed_in(browser, governed_lab, ANALYST)
    assert "Nothing here for you" in page.inner_text("main")
    for path in ("/console/queue", f"/console/queue/{request.request_id}", "/console/audit"):
        response = page.goto(f"{governed_lab.url}{path}")
        assert response is not None and response.status == 403, path
        assert "not allowed" in page.inner_text("#error")
    response = page.request.post(
        f"{governed_lab.url}/console/queue/{request.request_id}/reject",
        form={"reason": "self-service"},
    )
    assert response.status == 403
    with Lab(governed_lab.url, governed_lab.tokens[ANALYST]) as analyst:
        (decision,) = analyst.approval_request(request.request_id).decisions
    assert decision.state.value == "pending"


def test_a_wrong_token_does_not_sign_in(browser, governed_lab: LocalLab) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{governed_lab.url}/console/queue")
    assert page.url.endswith("/console/sign-in")
    page.fill("input[name=token]", "not-a-token")
    page.click("button[type=submit]")
    assert "unknown token" in page.inner_text("#error")
