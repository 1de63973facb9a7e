"""Every folder's manifest loads with the shared model and matches its files exactly."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from datalab.manifest import AgencyManifest
from synthetic_city.schema import AGENCIES, ARROW_TYPES


def _folders(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.glob("*/manifest.json"))


def test_one_manifest_per_agency_and_district(out: Path) -> None:
    names = {p.name for p in _folders(out)}
    assert set(AGENCIES) <= names
    assert any(n.startswith("district_44") and len(n) == len("district_440106") for n in names)
    assert not (out / "truth" / "manifest.json").exists()


def test_manifests_match_files(out: Path) -> None:
    for folder in _folders(out):
        m = AgencyManifest.load(folder)
        assert m.agency == folder.name
        for ds in m.datasets:
            table = pq.read_table(folder / ds.path)
            assert table.num_rows == ds.rows > 0, (folder.name, ds.name)
            assert table.column_names == [c.name for c in ds.columns]
            for col in ds.columns:
                assert table.schema.field(col.name).type == ARROW_TYPES[col.type]
                if col.geo_level:
                    assert col.geo_level == "grid"
                    lengths = pc.unique(pc.utf8_length(table[col.name].drop_null()))
                    assert lengths.to_pylist() == [15]
                if col.values:
                    seen = set(table[col.name].drop_null().unique().to_pylist())
                    assert seen <= set(col.values), (ds.name, col.name, seen)
