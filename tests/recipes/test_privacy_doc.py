"""docs/privacy.md documents every disclosure setting with its current default."""

from __future__ import annotations

import json
from pathlib import Path

from recipes.rules import SETTINGS

DOC = Path(__file__).resolve().parents[2] / "docs" / "privacy.md"


def test_every_setting_is_documented_with_its_default() -> None:
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in DOC.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `")
    }
    for setting in SETTINGS:
        assert f"`{setting.name}`" in rows, f"{setting.name} is not in docs/privacy.md"
        assert rows[f"`{setting.name}`"] == f"`{json.dumps(setting.default)}`", setting.name
