"""Aggregate benchmark: the lab end to end vs DuckDB alone, and the lab's fixed cost per job.

(a) throughput: a filtered grouped count over 4 nodes x N rows (Parquet), run through the lab
    (analyst client -> hub -> 4 node processes -> hub -> client), against DuckDB running the same
    query over the same four files in one process, measured in the same run;
(b) fixed cost: the same recipe over 4 nodes x 1,000 rows, repeated; p50 and p95 latency.

    python bench/aggregate.py            # 4 x 10,000,000 rows
    python bench/aggregate.py --quick    # 4 x 1,000,000 rows

The last line printed is JSON with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datalab.client import Lab
from datalab.manifest import AgencyManifest, ColumnSpec, DatasetSpec
from datalab_cli.local_lab import ANALYST, LocalLab

DISTRICTS = ["440103", "440104", "440105", "440106"]
AGE_BANDS = ["0-14", "15-24", "25-44", "45-59", "60-79", "80+"]
QUERY = dict(
    kind="district_population",
    group_by=["grid"],
    level="street",
    filters=[["is_migrant", "eq", True], ["age_band", "in", ["25-44", "45-59"]]],
)
SQL = """
SELECT substr(grid, 1, 9) AS street, count(*) AS n
FROM read_parquet($files)
WHERE is_migrant = true AND age_band IN ('25-44', '45-59')
GROUP BY 1
"""


def write_district(folder: Path, district: str, rows: int, seed: int) -> None:
    """One district node's population table, shaped like the synthetic city's."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    grids = np.array(
        [
            f"{district}{s:03d}{c:03d}{g:03d}"
            for s in range(1, 9)
            for c in range(1, 7)
            for g in range(1, 11)
        ]
    )
    writer = None
    chunk = 2_000_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        ages = rng.integers(0, 95, n)
        table = pa.table(
            {
                "id_number": pa.array(np.char.add("4401", (start + np.arange(n)).astype(str))),
                "sex": pa.array(np.where(rng.random(n) < 0.5, "M", "F")),
                "age": pa.array(ages.astype(np.int32)),
                "age_band": pa.array(np.array(AGE_BANDS)[np.digitize(ages, [15, 25, 45, 60, 80])]),
                "grid": pa.array(grids[rng.integers(0, len(grids), n)]),
                "is_migrant": pa.array(rng.random(n) < 0.55),
                "employed": pa.array(rng.random(n) < 0.6),
                "monthly_income": pa.array(rng.gamma(2.0, 3000.0, n)),
                "household_size": pa.array(rng.integers(1, 7, n).astype(np.int32)),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(folder / "population.parquet", table.schema)
        writer.write_table(table, row_group_size=500_000)
    assert writer is not None
    writer.close()
    col = ColumnSpec.model_validate
    AgencyManifest(
        agency=folder.name,
        title=f"District {district} (benchmark)",
        datasets=[
            DatasetSpec(
                name="population",
                kind="district_population",
                path="population.parquet",
                rows=rows,
                columns=[
                    col({"name": "id_number", "type": "string", "class": "identifier"}),
                    col({"name": "sex", "type": "string", "class": "public", "values": ["M", "F"]}),
                    col({"name": "age", "type": "integer", "class": "quasi_identifier"}),
                    col(
                        {
                            "name": "age_band",
                            "type": "string",
                            "class": "public",
                            "values": AGE_BANDS,
                        }
                    ),
                    col(
                        {
                            "name": "grid",
                            "type": "string",
                            "class": "quasi_identifier",
                            "geo_level": "grid",
                        }
                    ),
                    col({"name": "is_migrant", "type": "boolean", "class": "public"}),
                    col({"name": "employed", "type": "boolean", "class": "public"}),
                    col({"name": "monthly_income", "type": "float", "class": "sensitive"}),
                    col({"name": "household_size", "type": "integer", "class": "sensitive"}),
                ],
            )
        ],
    ).write(folder)


def make_city(root: Path, rows: int) -> Path:
    for i, district in enumerate(DISTRICTS):
        write_district(root / f"district_{district}", district, rows, seed=100 + i)
    return root


def timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def throughput(work: Path, rows: int, repeat: int) -> tuple[float, float]:
    city = make_city(work / "big", rows)
    files = [str(city / f"district_{d}" / "population.parquet") for d in DISTRICTS]
    con = duckdb.connect()
    expected = dict(con.execute(SQL, {"files": files}).fetchall())
    duck = timed(lambda: con.execute(SQL, {"files": files}).fetchall(), repeat + 1)[1:]
    with LocalLab(city_dir=city, state_dir=work / "big-state", node_timeout_s=600) as lab:
        analyst = Lab(lab.url, lab.tokens[ANALYST], timeout=600)
        result = analyst.run(**QUERY, recipe="aggregate", progress=False)
        got = {r.street: r.n for r in result.itertuples() if pd.notna(r.n)}
        mismatched = [k for k, v in got.items() if expected.get(k) != v]
        if mismatched:
            raise SystemExit(f"lab and DuckDB disagree on {len(mismatched)} streets")
        lab_times = timed(lambda: analyst.run(**QUERY, recipe="aggregate", progress=False), repeat)
        analyst.close()
    return statistics.median(lab_times), statistics.median(duck)


def fixed_cost(work: Path, repeat: int) -> tuple[float, float]:
    city = make_city(work / "small", 1_000)
    with LocalLab(city_dir=city, state_dir=work / "small-state") as lab:
        analyst = Lab(lab.url, lab.tokens[ANALYST])
        for _ in range(5):
            analyst.run(**QUERY, recipe="aggregate", progress=False)
        times = timed(lambda: analyst.run(**QUERY, recipe="aggregate", progress=False), repeat)
        analyst.close()
    ms = sorted(t * 1000 for t in times)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 x 1,000,000 rows")
    parser.add_argument("--rows", type=int, default=None, help="rows per node")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of the big query")
    parser.add_argument("--small-repeat", type=int, default=100, help="timed small jobs")
    args = parser.parse_args()
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    with tempfile.TemporaryDirectory(prefix="datalab-bench-") as tmp:
        work = Path(tmp)
        print(f"writing 4 x {rows:,} rows and starting the lab ...", file=sys.stderr)
        lab_s, duck_s = throughput(work, rows, args.repeat)
        print(f"(a) lab {lab_s:.3f} s  duckdb {duck_s:.3f} s  ratio {lab_s / duck_s:.2f}")
        p50, p95 = fixed_cost(work, args.small_repeat)
        print(f"(b) 4 x 1,000 rows: p50 {p50:.1f} ms  p95 {p95:.1f} ms")
    print(
        json.dumps(
            {
                "bench": "aggregate",
                "nodes": len(DISTRICTS),
                "rows_per_node": rows,
                "lab_s": round(lab_s, 4),
                "duckdb_s": round(duck_s, 4),
                "ratio": round(lab_s / duck_s, 3),
                "small_p50_ms": round(p50, 2),
                "small_p95_ms": round(p95, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
