"""Attacks through the public interfaces: try to get a row, an identifier or a small cell out.

Each test asserts that the attack fails.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx
import pandas as pd
import pytest

from datalab.client import Lab
from datalab.errors import InvalidParameters
from datalab.geography import CODE_LENGTH, LEVELS
from datalab_cli.local_lab import ANALYST, AUDITOR, OPERATOR, LocalLab
from tests.support.identifiers import CityIdentifiers
from tests.support.proxy import RecordingProxy

GROUPS = ["elderly", "chronic_illness", "disability", "pregnancy"]
AREA_LEVELS = ["district", "street", "community", "grid"]


def _run_many(analyst: Lab) -> list[pd.DataFrame]:
    results = [
        analyst.run("key_groups", group=g, level=lvl, progress=False)
        for g, lvl in itertools.product(GROUPS, AREA_LEVELS)
    ]
    for lvl in AREA_LEVELS:
        results.append(
            analyst.run(
                "aggregate",
                kind="district_population",
                group_by=["grid", "sex"],
                level=lvl,
                progress=False,
            )
        )
    return results


def test_no_endpoint_returns_identifiers_to_any_role(
    lab: LocalLab, proxy: RecordingProxy, analyst: Lab, city_identifiers: CityIdentifiers
) -> None:
    results = _run_many(analyst)
    job_ids = [r.attrs["provenance"].job_id for r in results]
    bodies: list[bytes] = []
    for who in (ANALYST, AUDITOR, OPERATOR):
        headers = {"Authorization": f"Bearer {lab.tokens[who]}"}
        paths = [
            "/api/v1/whoami",
            "/api/v1/catalogue",
            "/api/v1/recipes",
            "/api/v1/jobs",
            "/api/v1/audit?limit=10000",
            "/api/v1/nodes",
            "/api/v1/hub",
            "/openapi.json",
        ]
        paths += [f"/api/v1/jobs/{j}" for j in job_ids]
        for path in paths:
            response = httpx.get(f"{proxy.url}{path}", headers=headers, timeout=30)
            assert response.status_code in (200, 403), (path, response.text)
            bodies.append(response.content)
    everything = b"\n".join(bodies)
    assert len(everything) > 10_000  # the responses really were read
    assert city_identifiers.leaks(everything) == set()


def test_hub_database_log_and_received_bytes_hold_no_identifiers(
    lab: LocalLab, proxy: RecordingProxy, analyst: Lab, city_identifiers: CityIdentifiers
) -> None:
    _run_many(analyst)
    received = proxy.received()
    assert b"/api/v1/nodes/" in received and b"signature" in received  # nodes really posted
    assert city_identifiers.leaks(received) == set()
    hub_files = [p for p in lab.hub_state().rglob("*") if p.is_file()]
    assert any(p.name.startswith("hub.db") for p in hub_files)
    for path in hub_files:
        assert city_identifiers.leaks(path.read_bytes()) == set(), path.name
    assert city_identifiers.leaks(lab.log_text("hub").encode()) == set()


def test_the_god_view_scanner_does_find_identifiers(city: Path, city_identifiers: CityIdentifiers):
    """The scanner used above must be able to see what it looks for (no vacuous pass)."""
    raw = (city / "public_security" / "registrations.parquet").read_bytes()
    frame = pd.read_parquet(city / "public_security" / "registrations.parquet").head(50)
    as_json = frame.to_json(orient="records", force_ascii=False).encode()
    assert city_identifiers.leaked_ids(as_json)
    assert city_identifiers.leaked_names(as_json)
    assert raw  # the file exists and is non-empty


@pytest.mark.parametrize(
    "params",
    [
        {"group_by": ["id_number"]},
        {"group_by": ["grid", "id_number"]},
        {"filters": [["id_number", "eq", "440103199001011234"]]},
        {"measure": "sum", "column": "id_number"},
        {"group_by": ["monthly_income"]},
    ],
)
def test_identifier_and_sensitive_columns_cannot_be_grouped_or_filtered(
    analyst: Lab, params: dict
) -> None:
    with pytest.raises(InvalidParameters) as err:
        analyst.run("aggregate", kind="district_population", progress=False, **params)
    assert "id_number" in err.value.message or "monthly_income" in err.value.message


def test_no_small_cell_at_any_level_and_none_recoverable_from_a_coarser_total(
    analyst: Lab,
) -> None:
    for group in GROUPS:
        tables = {
            lvl: analyst.run("key_groups", group=group, level=lvl, progress=False)
            for lvl in LEVELS[1:]
        }
        for lvl, table in tables.items():
            released = table["n"].dropna()
            assert (released >= 10).all(), f"{group}/{lvl}: a cell below 10 was released"
        for child_level, parent_level in zip(LEVELS[2:], LEVELS[1:-1], strict=True):
            child, parent = tables[child_level], tables[parent_level]
            child = child.assign(parent=child[child_level].str[: CODE_LENGTH[parent_level]])
            parents = parent.dropna(subset=["n"]).set_index(parent_level)["n"]
            for code, rows in child.groupby("parent"):
                hidden = rows["n"].isna().sum()
                if code not in parents.index or hidden == 0:
                    continue
                # subtraction attack: parent total minus the released children
                remainder = parents[code] - rows["n"].sum()
                assert hidden >= 2, f"{group}: lone suppressed {child_level} cell in {code}"
                assert remainder >= 10, f"{group}: suppressed {child_level} cells in {code} sum "
