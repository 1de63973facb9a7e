"""End to end through real processes: analyst client → hub → node agents → hub → analyst.

Released numbers are checked against a "god view" computed here straight from the agencies'
files, which no party of the lab can do.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from datalab.client import Lab
from datalab.geography import CODE_LENGTH
from datalab_cli.local_lab import LocalLab, agency_folders
from recipes.registry import default_registry


def _released_matches_truth(result: pd.DataFrame, truth: pd.Series, key: str) -> None:
    """Every released cell equals the true count; every true cell ≥ 10 is either released or
    withheld by complementary suppression; nothing below 10 is released."""
    released = result.dropna(subset=["n"])
    assert (released["n"] >= 10).all()
    for code, n in zip(released[key], released["n"], strict=True):
        assert truth.get(code) == n, f"{key} {code}: released {n}, true {truth.get(code)}"
    small = set(truth[truth < 10].index)
    assert not small & set(released[key]), "a cell below 10 was released"


def test_catalogue_lists_every_agency_online_with_metadata_only(
    analyst: Lab, lab: LocalLab, city: Path
) -> None:
    datasets = analyst.datasets()
    agencies = {p.name for p in agency_folders(city)}
    assert set(datasets["agency"]) == agencies
    assert (datasets["node_status"] == "online").all()
    assert (datasets["rows"] > 0).all()
    columns = analyst.catalogue()
    classes = set(columns["class"])
    assert classes <= {"identifier", "quasi_identifier", "sensitive", "public"}
    assert "identifier" in classes


def test_recipes_are_listed_with_the_hash_of_their_reviewed_code(analyst: Lab) -> None:
    listed = analyst.recipes().set_index("recipe")
    for recipe in default_registry().all():
        assert listed.loc[recipe.name, "code_sha256"] == recipe.code_sha256()
    manifest = analyst.recipe("key_groups").manifest
    assert {p["name"] for p in manifest["params"]} >= {"group", "level"}


@pytest.mark.parametrize("level", ["district", "street", "community", "grid"])
def test_key_groups_elderly_match_the_truth_at_every_level(
    analyst: Lab, city: Path, level: str
) -> None:
    result = analyst.run("key_groups", group="elderly", level=level, progress=False)
    benefits = pd.read_parquet(city / "civil_affairs" / "benefits.parquet")
    elderly = benefits[benefits["benefit"] == "elderly_allowance"]
    truth = elderly["grid"].str[: CODE_LENGTH[level]].value_counts()
    _released_matches_truth(result, truth, level)
    assert result["n"].notna().any(), "nothing released at all"
    prov = result.attrs["provenance"]
    assert prov.recipe == "key_groups"
    assert prov.agencies == ["civil_affairs"]
    assert prov.min_cell >= 10
    assert prov.suppressed_cells == int(result["n"].isna().sum())


def test_key_groups_from_health_records(analyst: Lab, city: Path) -> None:
    result = analyst.run("key_groups", group="chronic_illness", level="street", progress=False)
    records = pd.read_parquet(city / "health" / "health_records.parquet")
    chronic = records[records["condition"] == "chronic_illness"]
    truth = chronic["residence_grid"].str[: CODE_LENGTH["street"]].value_counts()
    _released_matches_truth(result, truth, "street")
    assert result.attrs["provenance"].agencies == ["health"]


def test_federated_mean_over_district_nodes_equals_the_pooled_mean(
    analyst: Lab, city: Path
) -> None:
    result = analyst.run(
        "aggregate",
        kind="district_population",
        measure="mean",
        column="monthly_income",
        group_by=["grid", "is_migrant"],
        level="district",
        progress=False,
    )
    pooled = pd.concat(
        pd.read_parquet(p / "population.parquet") for p in sorted(city.glob("district_*"))
    )
    pooled["district"] = pooled["grid"].str[:6]
    truth = pooled.groupby(["district", "is_migrant"])["monthly_income"].agg(["mean", "size"])
    released = result.dropna(subset=["n"])
    assert len(released) == len(truth[truth["size"] >= 10])
    for row in released.itertuples():
        expected = truth.loc[(row.district, row.is_migrant)]
        assert row.n == expected["size"]
        assert row.mean == pytest.approx(expected["mean"], rel=1e-9)
    prov = result.attrs["provenance"]
    assert sorted(prov.agencies) == sorted(p.name for p in city.glob("district_*"))


def test_filters_reach_every_node(analyst: Lab, city: Path) -> None:
    result = analyst.run(
        "aggregate",
        kind="district_population",
        group_by=["grid"],
        level="district",
        filters=[["age_band", "in", ["60-79", "80+"]], ["is_migrant", "eq", False]],
        progress=False,
    )
    pooled = pd.concat(
        pd.read_parquet(p / "population.parquet") for p in sorted(city.glob("district_*"))
    )
    chosen = pooled[pooled["age_band"].isin(["60-79", "80+"]) & ~pooled["is_migrant"]]
    truth = chosen["grid"].str[:6].value_counts()
    _released_matches_truth(result, truth, "district")


def test_progress_bar_and_job_listing(analyst: Lab) -> None:
    frame = analyst.run("key_groups", group="pregnancy", level="district", progress=True)
    job_id = frame.attrs["provenance"].job_id
    jobs = analyst.jobs()
    assert job_id in set(jobs["job_id"])
    assert jobs.set_index("job_id").loc[job_id, "state"] == "released"
