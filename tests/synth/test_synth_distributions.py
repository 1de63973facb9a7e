"""Shares within tolerance of the configured ones: migrants, urban villages, ages, geography."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from datalab.geography import CODE_LENGTH
from synthetic_city import SynthConfig
from synthetic_city.people import BAND_EDGES, day_number

from .conftest import read


def _people(out: Path) -> dict[str, np.ndarray]:
    t = read(out, "truth/people.parquet")
    return {name: t[name].to_numpy(zero_copy_only=False) for name in t.column_names}


def test_migrant_share(out: Path, config: SynthConfig) -> None:
    p = _people(out)
    assert abs(p["is_migrant"].mean() - config.migrant_share) < 0.015


def test_urban_village_concentration(out: Path, config: SynthConfig) -> None:
    geo = read(out, "geography.parquet").to_pandas()
    uv_grids = set(geo.loc[(geo.level == "grid") & geo.is_urban_village, "code"])
    p = _people(out)
    home = p["home_grid"]
    has_home = np.array([h is not None for h in home])
    in_uv = np.array([h in uv_grids for h in home])
    mig = p["is_migrant"] & has_home
    loc = ~p["is_migrant"] & has_home
    assert abs(in_uv[mig].mean() - config.migrant_urban_village_share) < 0.03
    assert abs(in_uv[loc].mean() - config.local_urban_village_share) < 0.02
    # most urban-village residents are migrants
    assert p["is_migrant"][in_uv].mean() > 0.8


def test_age_structure(out: Path, config: SynthConfig) -> None:
    p = _people(out)
    birth = p["birth_date"].astype("datetime64[D]").astype(np.int64)
    age_years = (day_number(config.reference_date) - birth) / 365.2425
    band = np.searchsorted(np.array(BAND_EDGES[1:-1]), age_years, side="right")
    for migrant, target in ((True, config.migrant_age_bands), (False, config.local_age_bands)):
        shares = np.bincount(band[p["is_migrant"] == migrant], minlength=6) / (
            (p["is_migrant"] == migrant).sum()
        )
        assert np.abs(shares - np.array(target)).max() < 0.02, (migrant, shares)
    working = (age_years >= 15) & (age_years < 60)
    assert working[p["is_migrant"]].mean() > 0.8


def test_ids_unique_and_valid(out: Path) -> None:
    ids = read(out, "truth/people.parquet")["id_number"]
    assert pc.count_distinct(ids).as_py() == len(ids)
    assert pc.all(pc.equal(pc.utf8_length(ids), 18)).as_py()
    from datalab.gb11643 import valid_ids

    assert valid_ids(ids).all()
    # sex parity: odd sequence digit = male
    p = _people(out)
    odd = np.array([int(s[16]) % 2 == 1 for s in p["id_number"]])
    assert (odd == (p["sex"] == "M")).all()


def test_geography_codes(out: Path, config: SynthConfig) -> None:
    for row in read(out, "geography.parquet").to_pylist():
        assert len(row["code"]) == CODE_LENGTH[row["level"]]
        if row["level"] != "city":
            assert row["code"].startswith(row["parent_code"])
    geo = read(out, "geography.parquet").to_pandas()
    grids = geo[geo.level == "grid"]
    assert (geo.level == "district").sum() == config.n_districts
    assert 300 <= config.people / len(grids) <= 1000
    assert geo.loc[geo.level == "community", "is_urban_village"].any()
