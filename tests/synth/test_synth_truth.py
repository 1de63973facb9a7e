"""Every ground-truth flag is consistent with what the agencies hold, and every case is flagged."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from synthetic_city import SynthConfig


@pytest.fixture(scope="module")
def db(out: Path, config: SynthConfig) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    views = {
        "flags": "truth/flags.parquet",
        "people": "truth/people.parquet",
        "reg": "public_security/registrations.parquet",
        "ten": "housing/tenancy_contracts.parquet",
        "contrib": "hrss/contributions.parquet",
        "deaths": "health/deaths.parquet",
        "act": "activity/activity_events.parquet",
    }
    for name, rel in views.items():
        con.execute(f"create view {name} as select * from read_parquet('{out / rel}')")
    con.execute(f"create macro ref() as date '{config.reference_date.isoformat()}'")
    return con


def _one(db: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = db.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_flags_exist_in_all_kinds(db: duckdb.DuckDBPyConnection) -> None:
    kinds = dict(db.execute("select flag_type, count(*) from flags group by 1").fetchall())
    assert set(kinds) == {"missed_registration", "should_cancel", "separation"}
    assert min(kinds.values()) > 50
    assert _one(db, "select count(*) - count(distinct person) from flags") == 0


def test_missed_registration_has_evidence_and_no_registration(
    db: duckdb.DuckDBPyConnection,
) -> None:
    registered_there = """
        select count(*) from flags f join reg r
          on r.id_number = f.id_number and r.reg_grid = f.grid and r.status = 'active'
        where f.flag_type = 'missed_registration'"""
    assert _one(db, registered_there) == 0
    # tenancy evidence: an open contract in the grid, found by normalised ID or by the cascade
    tenancy = """
        select count(*) from flags f join people p using (person)
        where f.flag_type = 'missed_registration' and f.evidence like '%tenancy%'
          and not exists (
            select 1 from ten t where t.grid = f.grid
              and t.start_date <= ref() and (t.end_date is null or t.end_date >= ref())
              and (upper(t.tenant_id_number) = f.id_number
                   or (t.tenant_name = p.name
                       and t.tenant_birth_date = strftime(p.birth_date, '%Y/%m/%d')
                       and t.tenant_sex = case p.sex when 'M' then '男' else '女' end)))"""
    assert _one(db, tenancy) == 0
    nights = """
        select count(*) from flags f
        where f.flag_type = 'missed_registration' and f.evidence like '%night_activity%'
          and not exists (select 1 from act a where a.person_id = f.id_number
                          and a.grid = f.grid and a.period = 'night')"""
    assert _one(db, nights) == 0
    contributions = """
        select count(*) from flags f
        where f.flag_type = 'missed_registration' and f.evidence like '%contributions%'
          and not exists (select 1 from contrib c where c.id_number = f.id_number)"""
    assert _one(db, contributions) == 0
    lives = """
        select count(*) from flags where flag_type = 'missed_registration'
          and evidence not like '%tenancy%' and evidence not like '%night_activity%'"""
    assert _one(db, lives) == 0
    alive_in_city = """
        select count(*) from flags f join people p using (person)
        where f.flag_type = 'missed_registration'
          and (not p.alive or p.left_city or p.home_grid <> f.grid)"""
    assert _one(db, alive_in_city) == 0


def test_should_cancel_is_registered_but_dead_or_gone(db: duckdb.DuckDBPyConnection) -> None:
    sql = """
        select count(*) from flags f join people p using (person)
        where f.flag_type = 'should_cancel' and (
          not exists (select 1 from reg r where r.id_number = f.id_number
                      and r.reg_grid = f.grid and r.status = 'active')
          or not (p.left_city or exists (select 1 from deaths d where d.id_number = f.id_number))
        )"""
    assert _one(db, sql) == 0
    both = dict(
        db.execute(
            "select evidence, count(*) from flags where flag_type = 'should_cancel' group by 1"
        ).fetchall()
    )
    assert set(both) == {"death_record", "left_city"}


def test_separation_is_household_registration_elsewhere(db: duckdb.DuckDBPyConnection) -> None:
    sql = """
        select count(*) from flags f join people p using (person)
        where f.flag_type = 'separation' and (
          not exists (select 1 from reg r where r.id_number = f.id_number and r.reg_grid = f.grid
                      and r.status = 'active' and r.reg_type = 'household')
          or p.home_grid is null or p.home_grid = f.grid or not p.alive or p.is_migrant)"""
    assert _one(db, sql) == 0


def test_every_case_is_flagged(db: duckdb.DuckDBPyConnection, config: SynthConfig) -> None:
    """Recompute the flags from agency registrations + truth residence; they must agree."""
    sql = f"""
        with active as (select * from reg where status = 'active'),
        expected as (
          select p.person, 'should_cancel' as flag_type from people p
            join active a on a.id_number = p.id_number where not p.alive or p.left_city
          union all
          select p.person, 'separation' from people p
            join active a on a.id_number = p.id_number
            where p.alive and not p.left_city and a.reg_type = 'household'
              and a.reg_grid <> p.home_grid
          union all
          select p.person, 'missed_registration' from people p
            where p.alive and not p.left_city
              and date_diff('year', p.birth_date, ref())
                  - (strftime(p.birth_date, '%m%d') > strftime(ref(), '%m%d'))::int
                  >= {config.registration_min_age}
              and not exists (select 1 from active a where a.id_number = p.id_number
                              and (a.reg_grid = p.home_grid or a.reg_type = 'household'))
        )
        select count(*) from (
          (select person, flag_type from expected except select person, flag_type from flags)
          union all
          (select person, flag_type from flags except select person, flag_type from expected))"""
    assert _one(db, sql) == 0


def test_registrations_match_truth(db: duckdb.DuckDBPyConnection) -> None:
    sql = """
        select count(*) from people p left join reg r
          on r.id_number = p.id_number and r.status = 'active'
        where r.reg_grid is distinct from p.reg_grid"""
    assert _one(db, sql) == 0
    assert _one(db, "select max(c) from (select count(*) c from reg "
                    "where status = 'active' group by id_number)") == 1  # fmt: skip
