"""The DuckDB connector computes exactly what pandas computes on the same rows, treats every
filter value as data, and describes its datasets without scanning them."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from datalab.geography import CODE_LENGTH
from node_agent.connector import DuckDBConnector
from recipes.contract import AggregatePlan, Filter, GroupKey, Measure
from recipes.plan_sql import PlanError, compile_plan


def rows_of(table: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in table.rows]


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def test_group_by_rolled_up_area_matches_pandas(connector: DuckDBConnector, frame: pd.DataFrame):
    plan = AggregatePlan(
        dataset="population",
        group_by=[GroupKey(column="grid", level="street", alias="street"), GroupKey(column="sex")],
        measures=[
            Measure(fn="count", alias="n"),
            Measure(fn="sum", column="monthly_income", alias="income"),
            Measure(fn="count_distinct", column="employer_id", alias="employers"),
        ],
    )
    table, qss = connector.run(plan)
    assert table.columns == ["street", "sex", "n", "income", "employers"]
    df = frame.assign(street=frame["grid"].str.slice(0, CODE_LENGTH["street"]))
    expected = (
        df.groupby(["street", "sex"], dropna=False)
        .agg(
            n=("id_number", "size"),
            income=("monthly_income", lambda s: s.sum(min_count=1)),
            employers=("employer_id", "nunique"),
        )
        .reset_index()
    )
    got = {(r[0], r[1]): r[2:] for r in table.rows}
    assert len(got) == len(expected)
    for row in expected.itertuples(index=False):
        street = None if pd.isna(row.street) else row.street
        n, income, employers = got[(street, row.sex)]
        assert n == row.n
        assert close(income, None if pd.isna(row.income) else float(row.income))
        assert employers == row.employers
    assert qss == len(frame)
    # sorted by the keys, nulls last: deterministic bytes for the same data
    keys = [(r[0] is None, r[0] or "", r[1]) for r in table.rows]
    assert keys == sorted(keys)


def _grid(d: pd.DataFrame) -> pd.Series:
    return d["grid"].fillna("").astype(str)


FILTERS: list[tuple[str, str, Any, Any]] = [
    ("sex", "eq", "F", lambda d: d[d["sex"] == "F"]),
    ("sex", "ne", "F", lambda d: d[d["sex"] != "F"]),
    ("age_band", "in", ["0-14", "80+"], lambda d: d[d["age_band"].isin(["0-14", "80+"])]),
    ("age_band", "not_in", ["0-14"], lambda d: d[~d["age_band"].isin(["0-14"])]),
    ("age", "lt", 30, lambda d: d[d["age"] < 30]),
    ("age", "le", 30, lambda d: d[d["age"] <= 30]),
    ("age", "gt", 60.5, lambda d: d[d["age"] > 60.5]),
    ("age", "ge", 60, lambda d: d[d["age"] >= 60]),
    ("grid", "is_null", None, lambda d: d[d["grid"].isna()]),
    ("grid", "not_null", None, lambda d: d[d["grid"].notna()]),
    ("is_migrant", "eq", True, lambda d: d[d["is_migrant"]]),
    ("registered_on", "ge", "2020-01-01", lambda d: d[d["registered_on"] >= "2020-01-01"]),
    ("grid", "eq", "440103", lambda d: d[_grid(d).str.startswith("440103")]),
    (
        "grid",
        "in",
        ["440104001", "440103002001003"],
        lambda d: d[_grid(d).str.startswith("440104001") | (_grid(d) == "440103002001003")],
    ),
    # SQL semantics: a comparison with null is not true, so ne skips rows without a grid
    ("grid", "ne", "440103", lambda d: d[d["grid"].notna() & ~_grid(d).str.startswith("440103")]),
]


@pytest.mark.parametrize(("column", "op", "value", "select"), FILTERS)
@pytest.mark.parametrize("dataset", ["population", "population_csv"])
def test_filters_match_pandas(
    connector: DuckDBConnector, frame: pd.DataFrame, dataset, column, op, value, select
):
    plan = AggregatePlan(
        dataset=dataset,
        group_by=[GroupKey(column="age_band")],
        filters=[Filter(column=column, op=op, value=value)],
        measures=[
            Measure(fn="count", alias="n"),
            Measure(fn="sum", column="household_size", alias="hh"),
        ],
    )
    table, qss = connector.run(plan)
    selected = select(frame)
    assert qss == len(selected)
    expected = selected.groupby("age_band").agg(n=("age", "size"), hh=("household_size", "sum"))
    assert {r[0]: (r[1], r[2]) for r in table.rows} == {
        band: (int(row.n), float(row.hh)) for band, row in expected.iterrows()
    }


def test_no_group_keys_gives_one_row(connector: DuckDBConnector, frame: pd.DataFrame):
    plan = AggregatePlan(
        dataset="population",
        filters=[Filter(column="sex", op="eq", value="nobody")],
        measures=[Measure(fn="count", alias="n"), Measure(fn="sum", column="age", alias="s")],
    )
    table, qss = connector.run(plan)
    assert rows_of(table) == [(0, None)]
    assert qss == 0
    plan = plan.model_copy(update={"filters": []})
    table, qss = connector.run(plan)
    assert rows_of(table) == [(len(frame), float(frame["age"].sum()))]
    assert qss == len(frame)


def test_sum_of_boolean_counts_true(connector: DuckDBConnector, frame: pd.DataFrame):
    plan = AggregatePlan(
        dataset="population", measures=[Measure(fn="sum", column="is_migrant", alias="m")]
    )
    table, _ = connector.run(plan)
    assert rows_of(table) == [(float(frame["is_migrant"].sum()),)]


def test_catalogue_comes_from_metadata(connector: DuckDBConnector, data_dir: Path, frame):
    catalogue = {d.name: d for d in connector.datasets()}
    assert catalogue["population"].rows == len(frame)
    assert catalogue["population"].kind == "district_population"
    assert catalogue["population"].refreshed_at == (data_dir / "population.parquet").stat().st_mtime
    assert [c.name for c in catalogue["population_csv"].columns] == list(frame.columns)
    assert connector.spec("nope") is None


@pytest.mark.parametrize(
    "value",
    [
        "F' OR '1'='1",
        "F'; DROP VIEW population; --",
        'F" OR 1=1 --',
        "') UNION SELECT id_number FROM population --",
        "%",
        "\\",
    ],
)
def test_filter_values_are_bound_never_spliced(connector: DuckDBConnector, value: str):
    plan = AggregatePlan(
        dataset="population",
        filters=[Filter(column="sex", op="in", value=["nobody", value])],
        measures=[Measure(fn="count", alias="n")],
    )
    query = connector_sql(connector, plan)
    assert value not in query
    table, qss = connector.run(plan)
    assert rows_of(table) == [(0,)]
    assert qss == 0
    # the view is still there
    assert connector.run(plan.model_copy(update={"filters": []}))[1] > 0


def connector_sql(connector: DuckDBConnector, plan: AggregatePlan) -> str:
    spec = connector.spec(plan.dataset)
    assert spec is not None
    return compile_plan(plan, spec, '"population"').sql


@pytest.mark.parametrize(
    "column", ['sex" FROM population; --', "sex, id_number", "id_number)--", "*"]
)
def test_unknown_or_crafted_columns_are_refused(connector: DuckDBConnector, column: str):
    for plan in (
        AggregatePlan(
            dataset="population",
            group_by=[GroupKey(column=column)],
            measures=[Measure(fn="count", alias="n")],
        ),
        AggregatePlan(
            dataset="population",
            filters=[Filter(column=column, op="eq", value="F")],
            measures=[Measure(fn="count", alias="n")],
        ),
        AggregatePlan(dataset="population", measures=[Measure(fn="sum", column=column, alias="n")]),
    ):
        with pytest.raises(PlanError, match="unknown column"):
            connector.run(plan)


def test_crafted_alias_is_only_a_column_name(connector: DuckDBConnector):
    alias = 'n", id_number AS "x'
    plan = AggregatePlan(
        dataset="population",
        group_by=[GroupKey(column="sex", alias='s"; DROP VIEW population; --')],
        measures=[Measure(fn="count", alias=alias)],
    )
    table, _ = connector.run(plan)
    assert table.columns == ['s"; DROP VIEW population; --', alias]
    assert all(len(r) == 2 and isinstance(r[1], int) for r in table.rows)
    assert "X" not in json.dumps(table.rows)  # no identifier slipped into the output


def test_unknown_dataset_is_refused(connector: DuckDBConnector):
    with pytest.raises(PlanError, match="no dataset"):
        connector.run(AggregatePlan(dataset="secret", measures=[Measure(fn="count", alias="n")]))


def test_concurrent_runs_share_the_engine(connector: DuckDBConnector, frame: pd.DataFrame):
    plan = AggregatePlan(
        dataset="population",
        group_by=[GroupKey(column="grid", level="district", alias="district")],
        measures=[Measure(fn="count", alias="n")],
    )
    expected = connector.run(plan)
    results: list[Any] = []

    def work() -> None:
        for _ in range(20):
            results.append(connector.run(plan))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80
    assert all(r == expected for r in results)


def test_manifest_path_may_not_leave_the_agency_folder(tmp_path: Path, data_dir: Path):
    folder = tmp_path / "evil"
    folder.mkdir()
    manifest = json.loads((data_dir / "manifest.json").read_text())
    manifest["datasets"] = manifest["datasets"][:1]
    manifest["datasets"][0]["path"] = str(Path("..") / ".." / data_dir.name / "population.parquet")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PlanError, match="leaves the agency folder"):
        DuckDBConnector(folder)


def test_manifest_column_missing_from_file_fails_at_start(tmp_path: Path, data_dir: Path):
    manifest = json.loads((data_dir / "manifest.json").read_text())
    manifest["datasets"] = manifest["datasets"][:1]
    manifest["datasets"][0]["columns"].append(
        {"name": "ghost", "type": "string", "class": "public"}
    )
    folder = tmp_path / "agency"
    folder.mkdir()
    (folder / "population.parquet").write_bytes((data_dir / "population.parquet").read_bytes())
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PlanError, match="ghost"):
        DuckDBConnector(folder)


# ------------------------------------------------------------------ privacy measures


def test_top2_abs_gives_the_two_largest_contributions(
    connector: DuckDBConnector, frame: pd.DataFrame
) -> None:
    plan = AggregatePlan(
        dataset="population",
        group_by=[GroupKey(column="sex")],
        measures=[Measure(fn="top2_abs", column="monthly_income", alias="top2")],
    )
    table, _ = connector.run(plan)
    for sex, top2 in table.rows:
        expected = frame.loc[frame["sex"] == sex, "monthly_income"].abs().nlargest(2).tolist()
        assert [round(v, 6) for v in top2] == [round(v, 6) for v in expected]


def test_clamped_sums_and_rows_per_person(connector: DuckDBConnector, frame: pd.DataFrame) -> None:
    plan = AggregatePlan(
        dataset="population",
        measures=[
            Measure(fn="count", alias="n"),
            Measure(fn="sum", column="monthly_income", alias="s", lower=1000.0, upper=5000.0),
        ],
    )
    table, _ = connector.run(plan)
    n, s = table.rows[0]
    income = frame["monthly_income"].dropna()
    assert n == len(frame)
    assert close(s, float(income.clip(1000.0, 5000.0).sum()))  # nulls stay out, not clamped in
    # at most 2 rows per value of the person column (40 distinct employers here)
    bounded = plan.model_copy(update={"max_rows_per_person": 2, "person_column": "employer_id"})
    (row,) = connector.run(bounded)[0].rows
    assert row[0] == 2 * frame["employer_id"].nunique()


def test_clamping_turns_nan_and_infinities_into_the_bounds() -> None:
    import duckdb

    from datalab.manifest import DatasetSpec

    values = "('a', 'nan'::DOUBLE), ('b', 'inf'::DOUBLE), ('c', '-inf'::DOUBLE), "
    values += "('d', 1e308), ('e', NULL), ('f', 2.0)"
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT * FROM (VALUES {values}) v(id, x)")
    spec = DatasetSpec.model_validate(
        {
            "name": "t",
            "kind": "t",
            "path": "t.parquet",
            "rows": 6,
            "columns": [
                {"name": "id", "type": "string", "class": "identifier"},
                {"name": "x", "type": "float", "class": "sensitive"},
            ],
        }
    )
    plan = AggregatePlan(
        dataset="t",
        measures=[Measure(fn="sum", column="x", alias="s", lower=-1.0, upper=3.0)],
    )
    query = compile_plan(plan, spec, "t")
    (row,) = con.execute(query.sql, query.params).fetchall()
    assert row[0] == 3.0 + 3.0 - 1.0 + 3.0 + 2.0  # NaN, inf, 1e308 → 3; -inf → -1; null out
