"""``datalab privacy`` against the live lab: analysts read, agency admins set, bad input exits
non-zero with a message."""

from __future__ import annotations

import pytest

from datalab_cli.local_lab import ANALYST, LocalLab
from datalab_cli.main import main
from tests.support.proxy import RecordingProxy


def test_rules_and_budget_from_the_command_line(
    lab: LocalLab, proxy: RecordingProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    # --token=VALUE: a token may begin with "-", which argparse would read as an option
    analyst = ["privacy", "--url", proxy.url, f"--token={lab.tokens[ANALYST]}"]
    assert main([*analyst, "rules", "--recipe", "aggregate"]) == 0
    out = capsys.readouterr().out
    assert "min_cell" in out and "recipe:aggregate@1.0.0" in out
    agency = next(a for a in lab.agency_names() if a.startswith("district_"))
    admin = ["privacy", "--url", proxy.url, f"--token={lab.tokens[f'admin-{agency}']}"]
    assert main([*admin, "set-rule", agency, "rounding_base", "5"]) == 0
    assert f"agency:{agency}" in capsys.readouterr().out
    assert main([*admin, "set-rule", agency, "rounding_base", "0"]) == 0
    assert main([*admin, "set-rule", agency, "min_cell", "lots"]) == 1
    assert "not a number" in capsys.readouterr().err
    assert main([*analyst, "set-rule", agency, "min_cell", "20"]) == 1
    assert "not allowed" in capsys.readouterr().err
    scope = f"dataset:{agency}/population"
    assert main([*admin, "set-budget", scope, "2.5", "--analyst", "nobody"]) == 0
    assert "cap 2.5" in capsys.readouterr().out
    assert main([*analyst, "budget"]) == 0
    assert scope in capsys.readouterr().out
