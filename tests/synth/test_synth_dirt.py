"""Dirt at the configured rates: typos, missing IDs, lower-case x, duplicates, late updates."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from datalab.gb11643 import valid_ids
from synthetic_city import SynthConfig

from .conftest import read

#: (file, ID columns, missing-ID rate knob or None)
ID_COLUMNS = [
    ("housing/tenancy_contracts.parquet", ["tenant_id_number"], "missing_id_tenancy"),
    ("hrss/employment.parquet", ["id_number"], None),
    ("hrss/contributions.parquet", ["id_number"], None),
    ("health/health_records.parquet", ["id_number"], "missing_id_health"),
    ("civil_affairs/benefits.parquet", ["id_number"], None),
    ("activity/activity_events.parquet", ["person_id"], "missing_id_activity"),
    ("education/school_enrolment.parquet", ["student_id_number", "parent1_id_number"], None),
]


def _tolerance(rate: float, n: int) -> float:
    return 4 * math.sqrt(rate * (1 - rate) / n) + 0.002


def test_authorities_are_clean(out: Path) -> None:
    for rel in ("public_security/registrations.parquet", "health/deaths.parquet"):
        assert valid_ids(read(out, rel)["id_number"]).all()


@pytest.mark.parametrize(("rel", "columns", "missing_knob"), ID_COLUMNS)
def test_typo_and_missing_rates(
    out: Path, config: SynthConfig, rel: str, columns: list[str], missing_knob: str | None
) -> None:
    table = read(out, rel)
    for column in columns:
        values = pc.utf8_upper(table[column])
        present = pc.is_valid(values).to_numpy(zero_copy_only=False)
        invalid = ~valid_ids(values.filter(pa.array(present)))
        n = len(invalid)
        # typos are drawn before missing ones, so the share among present rows is slightly higher
        missing_rate = getattr(config, missing_knob) if missing_knob else 0.0
        expected = config.id_typo_rate / (1 - missing_rate * (1 - config.id_typo_rate))
        assert abs(invalid.mean() - expected) < _tolerance(expected, n), (column, invalid.mean())
        if missing_knob:
            assert abs((~present).mean() - missing_rate) < _tolerance(missing_rate, len(present))


def test_lower_case_x_in_housing_only(out: Path, config: SynthConfig) -> None:
    ids = read(out, "housing/tenancy_contracts.parquet")["tenant_id_number"].drop_null()
    last = pc.utf8_slice_codeunits(ids, 17, 18).to_numpy(zero_copy_only=False)
    x_any = np.isin(last, ["x", "X"])
    lower = (last == "x")[x_any].mean()
    assert abs(lower - config.lowercase_x_housing) < 0.1
    for rel in ("public_security/registrations.parquet", "hrss/employment.parquet"):
        col = read(out, rel)["id_number"].drop_null()
        assert not pc.any(pc.ends_with(col, "x")).as_py()


@pytest.mark.parametrize(
    "rel",
    [
        "hrss/contributions.parquet",
        "health/health_records.parquet",
        "activity/activity_events.parquet",
        "civil_affairs/benefits.parquet",
    ],
)
def test_exact_duplicates(out: Path, config: SynthConfig, rel: str) -> None:
    df = read(out, rel).to_pandas()
    dup = df.duplicated(keep="first").sum() / len(df)
    expected = config.duplicate_rate / (1 + config.duplicate_rate)
    assert abs(dup - expected) < _tolerance(expected, len(df)) + 0.002, dup


def test_near_duplicate_contracts(out: Path, config: SynthConfig) -> None:
    df = read(out, "housing/tenancy_contracts.parquet").to_pandas()
    assert df.contract_id.is_unique
    dup = df.drop(columns="contract_id").duplicated().sum() / len(df)
    assert abs(dup - config.duplicate_rate) < 0.006


def test_late_updates(out: Path) -> None:
    reg = read(out, "public_security/registrations.parquet").to_pandas()
    deaths = read(out, "health/deaths.parquet").to_pandas()
    merged = reg.merge(deaths[["id_number", "death_date"]], on="id_number")
    # some registrations of the dead are still active, cancelled ones lag the death
    assert (merged.status == "active").mean() > 0.1
    cancelled = merged[merged.status == "cancelled"]
    lag = pd.to_datetime(cancelled.cancelled_on) - pd.to_datetime(cancelled.death_date)
    assert (lag.dt.days >= 1).all()
    assert lag.dt.days.mean() > 10
    # open tenancy contracts of people who left or died
    people = read(out, "truth/people.parquet").to_pandas()
    gone = set(people.loc[~people.alive | people.left_city, "name"])
    ten = read(out, "housing/tenancy_contracts.parquet").to_pandas()
    assert (ten.end_date.isna() & ten.tenant_name.isin(gone)).sum() > 0


def test_agency_formats(out: Path) -> None:
    ten = read(out, "housing/tenancy_contracts.parquet")
    assert set(ten["tenant_sex"].unique().to_pylist()) == {"男", "女"}
    assert pc.all(pc.match_substring_regex(ten["tenant_birth_date"], r"^\d{4}/\d\d/\d\d$")).as_py()
    emp = read(out, "hrss/employment.parquet")
    assert set(emp["sex"].unique().to_pylist()) == {"1", "2"}
    assert pc.all(pc.match_substring_regex(emp["birth_date"], r"^\d{8}$")).as_py()
    months = read(out, "hrss/contributions.parquet")["month"]
    assert pc.all(pc.match_substring_regex(months, r"^\d{4}-\d\d$")).as_py()
    assert read(out, "public_security/registrations.parquet").schema.field("birth_date").type == (
        pa.date32()
    )
