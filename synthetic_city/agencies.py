"""Each agency's view of one chunk of people, in that agency's own formats and with its dirt.

Every function here turns the truth (``People``) into the rows an agency would hold: public
security registers, housing files tenancy contracts, HRSS pays contributions, and so on. Columns
are built as Arrow ``take`` gathers over per-person arrays computed once per chunk, which keeps
millions of rows cheap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthetic_city.areas import City
from synthetic_city.config import SynthConfig
from synthetic_city.dirt import IdColumn, duplicate_index, id_column
from synthetic_city.ids import lower_x, matrix_to_strings
from synthetic_city.people import NO, YEAR, People, day_number, ymd

SECONDS_PER_DAY = 86_400


def _take(array: pa.Array, index: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return array.take(pa.array(index, type=pa.int64(), mask=mask))


def _dates(days: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """date32 column from day numbers; NO (or ``null``) becomes null."""
    mask = days == NO if null is None else null
    return pa.array(days.astype(np.int32), type=pa.date32(), mask=mask)


def _date_text(days: np.ndarray, separator: str) -> pa.Array:
    """Dates as text YYYY<sep>MM<sep>DD, built as an ASCII matrix (strftime is ~10x slower)."""
    y, m, d = ymd(days)
    digits = [y // 1000, y // 100 % 10, y // 10 % 10, y % 10, m // 10, m % 10, d // 10, d % 10]
    columns = [c + ord("0") for c in digits]
    if separator:
        sep = np.full(len(days), ord(separator))
        columns = [*columns[:4], sep, *columns[4:6], sep, *columns[6:]]
    return matrix_to_strings(np.stack(columns, axis=1).astype(np.uint8))


def _ids_with_prefix(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    text = pc.utf8_lpad(pa.array(numbers, pa.int64()).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(pa.scalar(prefix), text, "")


@dataclass
class Chunk:
    """Per-person Arrow arrays shared by all agencies' tables of one chunk."""

    config: SynthConfig
    city: City
    people: People
    ref: int
    sex_mf: pa.Array
    sex_cn: pa.Array
    sex_12: pa.Array
    birth: pa.Array
    birth_slash: pa.Array
    birth_compact: pa.Array
    lower_ids: pa.StringArray
    last_reg_grid: np.ndarray

    @classmethod
    def build(cls, config: SynthConfig, city: City, people: People) -> Chunk:
        female = people.female.astype(np.int64)
        last_reg = np.full(len(people), NO, dtype=np.int32)
        last_reg[people.regs.person] = people.regs.grid  # rows are in person order: last wins
        return cls(
            config=config,
            city=city,
            people=people,
            ref=day_number(config.reference_date),
            sex_mf=_take(pa.array(["M", "F"]), female),
            sex_cn=_take(pa.array(["男", "女"]), female),
            sex_12=_take(pa.array(["1", "2"]), female),
            birth=_dates(people.birth),
            birth_slash=_date_text(people.birth, "/"),
            birth_compact=_date_text(people.birth, ""),
            lower_ids=matrix_to_strings(lower_x(people.id_mat)),
            last_reg_grid=last_reg,
        )

    def grids(self, index: np.ndarray) -> pa.Array:
        return _take(self.city.grid_codes, index, index == NO)

    def id_col(
        self,
        person: np.ndarray,
        rng: np.random.Generator,
        missing: float = 0.0,
        lower_x_rate: float = 0.0,
    ) -> IdColumn:
        return id_column(
            self.people.id_mat,
            self.people.ids,
            person,
            rng,
            typo_rate=self.config.id_typo_rate,
            missing_rate=missing,
            lower_x_rate=lower_x_rate,
            lower_ids=self.lower_ids,
        )


def _exact_duplicates(table: pa.Table, rng: np.random.Generator, rate: float) -> pa.Table:
    return table.take(pa.array(duplicate_index(rng, table.num_rows, rate)))


# --- public security ---------------------------------------------------------------------------


def registrations(ch: Chunk) -> pa.Table:
    """Registrations as public security holds them: clean IDs, the authority's own record."""
    p, r = ch.people, ch.people.regs
    person = r.person
    reg_type = _take(pa.array(["household", "floating"]), p.migrant[person].astype(np.int64))
    return pa.table(
        {
            "id_number": _take(p.ids, person),
            "name": _take(p.names, person),
            "sex": _take(ch.sex_mf, person),
            "birth_date": _take(ch.birth, person),
            "reg_type": reg_type,
            "reg_grid": ch.grids(r.grid),
            "registered_on": _dates(r.registered_on),
            "status": _take(pa.array(["cancelled", "active"]), r.active.astype(np.int64)),
            "cancelled_on": _dates(r.cancelled_on),
        }
    )


# --- housing -----------------------------------------------------------------------------------


@dataclass
class Tenancy:
    table: pa.Table
    #: per person: holds a contract in their home grid that is open on the reference date
    current_at_home: np.ndarray


def tenancy(ch: Chunk, rng: np.random.Generator) -> Tenancy:
    """Current (or last) contracts at home for renters, plus earlier ones for movers."""
    c, p, ref = ch.config, ch.people, ch.ref
    n = len(p)
    end_of_stay = np.where(~p.alive, p.death, np.where(p.left, p.left_on, ref))
    base = np.where(p.prev != NO, p.moved_on, np.where(p.migrant, p.arrived, ref - int(10 * YEAR)))
    base = np.maximum(base, p.birth + int(18 * YEAR))
    renter = p.renter & (base < end_of_stay - 60)
    r1 = np.flatnonzero(renter)
    lo = np.maximum(base[r1], ref - int(3 * YEAR))
    start1 = lo + np.floor(rng.random(len(r1)) * np.maximum(end_of_stay[r1] - 60 - lo, 1))
    start1 = start1.astype(np.int64)
    gone = end_of_stay[r1] < ref
    late = rng.random(len(r1)) < c.late_update_share
    open_ended = rng.random(len(r1)) < 0.4
    future_end = ref + 30 + np.floor(rng.random(len(r1)) * 700).astype(np.int64)
    end1 = np.where(gone, np.where(late, NO, end_of_stay[r1]), np.where(open_ended, NO, future_end))
    # earlier contract at the previous grid for movers who rented there
    r2 = np.flatnonzero(renter & (p.prev != NO) & (rng.random(n) < 0.7))
    end2 = p.moved_on[r2]
    start2 = end2 - 180 - np.floor(rng.random(len(r2)) * 1200).astype(np.int64)
    person = np.concatenate([r1, r2])
    grid = np.concatenate([p.home[r1], p.prev[r2]]).astype(np.int32)
    start = np.concatenate([start1, start2])
    end = np.concatenate([end1, end2])
    order = np.argsort(person, kind="stable")
    person, grid, start, end = person[order], grid[order], start[order], end[order]
    uv = ch.city.grid_uv[grid]
    rent = np.round(rng.lognormal(np.where(uv, 7.0, 7.8), 0.35), -1)
    ident = ch.id_col(person, rng, missing=c.missing_id_tenancy, lower_x_rate=c.lowercase_x_housing)
    table = pa.table(
        {
            "contract_id": pa.nulls(len(person), pa.string()),
            "tenant_id_number": ident.values,
            "tenant_name": _take(p.names, person),
            "tenant_sex": _take(ch.sex_cn, person),
            "tenant_birth_date": _take(ch.birth_slash, person),
            "grid": ch.grids(grid),
            "start_date": _dates(start),
            "end_date": _dates(end),
            "monthly_rent": pa.array(rent, pa.float64()),
        }
    )
    table = _exact_duplicates(table, rng, c.duplicate_rate)
    # near duplicates: the same contract filed twice gets two numbers
    numbers = p.offset * 4 + np.arange(table.num_rows, dtype=np.int64)
    table = table.set_column(0, "contract_id", _ids_with_prefix("HT", numbers, 12))
    current = np.zeros(n, dtype=bool)
    current[r1[(end1 == NO) | (end1 >= ref)]] = True
    current &= p.alive & ~p.left
    return Tenancy(table=table, current_at_home=current)


# --- human resources and social security -----------------------------------------------------


def employment(ch: Chunk, rng: np.random.Generator) -> pa.Table:
    p = ch.people
    person = np.flatnonzero(p.insured)
    ident = ch.id_col(person, rng)
    return pa.table(
        {
            "id_number": ident.values,
            "name": _take(p.names, person),
            "sex": _take(ch.sex_12, person),
            "birth_date": _take(ch.birth_compact, person),
            "employer_id": _ids_with_prefix("EMP", p.employer[person].astype(np.int64), 8),
            "employer_grid": ch.grids(p.work[person]),
            "start_date": _dates(p.job_start[person]),
            "end_date": _dates(p.job_end[person]),
        }
    )


def _month_index(days: np.ndarray) -> np.ndarray:
    y, m, _ = ymd(days)
    return y * 12 + (m - 1)


@dataclass
class Contributions:
    table: pa.Table
    #: per person: months of contributions carrying the true ID
    clean_months: np.ndarray
    #: per person: months of contributions in the window (whatever the ID)
    months: np.ndarray


def contributions(ch: Chunk, rng: np.random.Generator) -> Contributions:
    c, p, ref = ch.config, ch.people, ch.ref
    ref_month = int(_month_index(np.array([ref]))[0])
    first = ref_month - c.contribution_months + 1
    ins = np.flatnonzero(p.insured)
    lo = np.maximum(_month_index(p.job_start[ins]), first)
    hi = np.where(p.job_end[ins] == NO, ref_month, _month_index(np.maximum(p.job_end[ins], 0)))
    count = np.clip(hi - lo + 1, 0, None)
    person = np.repeat(ins, count)
    within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    month = np.repeat(lo, count) + within
    labels = pa.array(
        [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in range(first, ref_month + 1)], pa.string()
    )
    ident = ch.id_col(person, rng)
    amount = np.round(p.wage[person] * 0.105, 2)
    table = pa.table(
        {
            "id_number": ident.values,
            "month": _take(labels, (month - first).astype(np.int64)),
            "employer_grid": ch.grids(p.work[person]),
            "amount": pa.array(amount, pa.float64()),
        }
    )
    n = len(p)
    return Contributions(
        table=_exact_duplicates(table, rng, c.duplicate_rate),
        clean_months=np.bincount(person[ident.clean], minlength=n),
        months=np.bincount(person, minlength=n),
    )


# --- health ------------------------------------------------------------------------------------


@dataclass
class Conditions:
    chronic: np.ndarray
    disabled: np.ndarray
    pregnant: np.ndarray


def conditions(ch: Chunk, rng: np.random.Generator) -> Conditions:
    p = ch.people
    n = len(p)
    chronic = rng.random(n) < 0.03 + 0.55 / (1 + np.exp(-(p.age - 60) / 8.0))
    disabled = rng.random(n) < 0.015 + 0.05 * (p.age >= 60)
    pregnant = p.female & (p.age >= 20) & (p.age <= 42) & p.alive & ~p.left & (rng.random(n) < 0.05)
    return Conditions(chronic=chronic, disabled=disabled, pregnant=pregnant)


def health_records(ch: Chunk, cond: Conditions, rng: np.random.Generator) -> pa.Table:
    c, p, ref = ch.config, ch.people, ch.ref
    end = np.where(~p.alive, p.death, np.where(p.left, p.left_on, ref))
    kinds = (cond.chronic, cond.disabled, cond.pregnant)
    person = np.concatenate([np.flatnonzero(k) for k in kinds])
    kind = np.concatenate([np.full(int(k.sum()), i) for i, k in enumerate(kinds)])
    order = np.argsort(person, kind="stable")
    person, kind = person[order], kind[order]
    lo = np.maximum(p.birth[person], ref - int(6 * YEAR))
    recorded = lo + np.floor(rng.random(len(person)) * np.maximum(end[person] - lo, 1))
    recorded = np.where(kind == 2, ref - np.floor(rng.random(len(person)) * 270), recorded)
    recorded = recorded.astype(np.int64)
    moved_after = (p.prev[person] != NO) & (recorded < p.moved_on[person])
    grid = np.where(moved_after, p.prev[person], p.home[person])
    ident = ch.id_col(person, rng, missing=c.missing_id_health)
    table = pa.table(
        {
            "id_number": ident.values,
            "name": _take(p.names, person),
            "sex": _take(ch.sex_mf, person),
            "birth_date": _take(ch.birth, person),
            "residence_grid": ch.grids(grid),
            "condition": _take(
                pa.array(["chronic_illness", "disability", "pregnancy"]), kind.astype(np.int64)
            ),
            "recorded_on": _dates(recorded),
        }
    )
    return _exact_duplicates(table, rng, c.duplicate_rate)


def deaths(ch: Chunk) -> pa.Table:
    """Death certificates: every death in the window, with the true ID (certified)."""
    p = ch.people
    person = np.flatnonzero(~p.alive)
    return pa.table(
        {
            "id_number": _take(p.ids, person),
            "name": _take(p.names, person),
            "sex": _take(ch.sex_mf, person),
            "birth_date": _take(ch.birth, person),
            "death_date": _dates(p.death[person]),
            "grid": ch.grids(p.home[person]),
        }
    )


# --- civil affairs -----------------------------------------------------------------------------


def benefits(ch: Chunk, cond: Conditions, rng: np.random.Generator) -> pa.Table:
    """Allowances for locals, paid in the grid of their registered household.

    Recipients who died stay on the list with probability ``late_update_share`` (late update).
    """
    c, p, ref = ch.config, ch.people, ch.ref
    n = len(p)
    registered = ~p.migrant & (ch.last_reg_grid != NO)
    still_listed = (p.alive & ~p.left) | (~p.alive & (rng.random(n) < c.late_update_share))
    eligible = registered & still_listed
    elderly = (
        eligible & (p.age >= c.elderly_allowance_age) & (rng.random(n) < c.elderly_allowance_takeup)
    )
    disabled = eligible & cond.disabled & (rng.random(n) < c.disability_allowance_takeup)
    person = np.concatenate([np.flatnonzero(elderly), np.flatnonzero(disabled)])
    kind = np.concatenate([np.zeros(int(elderly.sum())), np.ones(int(disabled.sum()))])
    order = np.argsort(person, kind="stable")
    person, kind = person[order], kind[order].astype(np.int64)
    turned = p.birth[person] + int(c.elderly_allowance_age * YEAR)
    lo = np.where(kind == 0, np.maximum(turned, ref - int(10 * YEAR)), ref - int(10 * YEAR))
    lo = np.maximum(lo, p.birth[person])
    since = lo + np.floor(rng.random(len(person)) * np.maximum(ref - lo, 1)).astype(np.int64)
    grid = np.where(p.active_grid[person] != NO, p.active_grid[person], ch.last_reg_grid[person])
    ident = ch.id_col(person, rng)
    table = pa.table(
        {
            "id_number": ident.values,
            "name": _take(p.names, person),
            "sex": _take(ch.sex_mf, person),
            "birth_date": _take(ch.birth, person),
            "grid": ch.grids(grid),
            "benefit": _take(pa.array(["elderly_allowance", "disability_allowance"]), kind),
            "since": _dates(since),
        }
    )
    return _exact_duplicates(table, rng, c.duplicate_rate)


# --- activity ----------------------------------------------------------------------------------

ACTIVITIES = pa.array(["home", "work", "leisure", "transit"])
PERIODS = pa.array(["day", "night"])
HOME, WORK, LEISURE, TRANSIT = range(4)


@dataclass
class Activity:
    table: pa.Table
    #: per person: night events in the home grid carrying the true ID
    clean_home_nights: np.ndarray


def _events(
    ch: Chunk,
    rng: np.random.Generator,
    person: np.ndarray,
    night: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(event time in seconds, grid, activity) for events of ``person`` by night or day."""
    c, p, city = ch.config, ch.people, ch.city
    m = len(person)
    day = ch.ref - c.activity_days + 1 + np.floor(rng.random(m) * c.activity_days)
    hour = np.where(
        night,
        (19 + np.floor(rng.random(m) * 12)) % 24,
        7 + np.floor(rng.random(m) * 12),
    )
    seconds = day * SECONDS_PER_DAY + hour * 3600 + np.floor(rng.random(m) * 3600)
    home = p.home[person]
    district = city.grid_district[home]
    nearby = city.random_grid_in_district(rng, district)
    anywhere = rng.integers(0, city.n_grids, size=m).astype(np.int32)
    u = rng.random(m)
    working = (p.work[person] != NO) & (p.job_end[person] == NO)
    # night: at home, now and then out; day: at work for workers, else home, leisure or transit
    act = np.where(
        night,
        np.where(u < 0.95, HOME, LEISURE),
        np.where(
            working,
            np.where(u < 0.65, WORK, np.where(u < 0.85, LEISURE, TRANSIT)),
            np.where(u < 0.4, HOME, np.where(u < 0.7, LEISURE, TRANSIT)),
        ),
    )
    grid = np.select(
        [act == HOME, act == WORK, act == LEISURE], [home, p.work[person], nearby], anywhere
    ).astype(np.int32)
    return seconds.astype(np.int64), grid, act.astype(np.int64)


def _event_table(
    ch: Chunk, person_id: pa.Array, seconds: np.ndarray, grid: np.ndarray, act: np.ndarray,
    night: np.ndarray,
) -> pa.Table:  # fmt: skip
    return pa.table(
        {
            "person_id": person_id,
            "event_time": pa.array(seconds, pa.timestamp("s")),
            "grid": ch.grids(grid),
            "activity": _take(ACTIVITIES, act),
            "period": _take(PERIODS, night.astype(np.int64)),
        }
    )


def activity(ch: Chunk, rng: np.random.Generator) -> Activity:
    c, p = ch.config, ch.people
    n = len(p)
    seen = p.alive & ~p.left & (rng.random(n) < c.activity_coverage)
    count = np.where(seen, rng.poisson(c.events_per_person, size=n), 0)
    person = np.repeat(np.arange(n), count)
    night = rng.random(len(person)) < c.night_event_share
    seconds, grid, act = _events(ch, rng, person, night)
    ident = ch.id_col(person, rng, missing=c.missing_id_activity)
    home_night = night & (grid == p.home[person]) & ident.clean
    table = _exact_duplicates(
        _event_table(ch, ident.values, seconds, grid, act, night), rng, c.duplicate_rate
    )
    return Activity(table=table, clean_home_nights=np.bincount(person[home_night], minlength=n))


def forced_nights(ch: Chunk, rng: np.random.Generator, who: np.ndarray) -> pa.Table:
    """Night events at home, with the true ID, for people the truth says live there but whom no
    other source shows: a missed registration must be visible in some agency's data."""
    person = np.repeat(who, 3)
    night = np.ones(len(person), dtype=bool)
    seconds, _, _ = _events(ch, rng, person, night)
    grid = ch.people.home[person]
    act = np.full(len(person), HOME, dtype=np.int64)
    return _event_table(ch, _take(ch.people.ids, person), seconds, grid, act, night)


# --- education ---------------------------------------------------------------------------------


def school_enrolment(ch: Chunk, rng: np.random.Generator) -> pa.Table:
    """Pupils aged 6-17 living in the city, with parents found among adults of the same grid."""
    c, p, city = ch.config, ch.people, ch.city
    n = len(p)
    in_city = p.alive & ~p.left
    rate = np.where(p.migrant, c.migrant_enrolment_rate, c.local_enrolment_rate)
    pupil = np.flatnonzero(in_city & (p.age >= 6) & (p.age <= 17) & (rng.random(n) < rate))
    adult = in_city & (p.age >= 22) & (p.age <= 55)
    parents: list[np.ndarray] = []
    for sex in (True, False):  # mother, then father
        cand = np.flatnonzero(adult & (p.female == sex))
        cand = cand[np.argsort(p.home[cand], kind="stable")]
        cgrid = p.home[cand]
        lo = np.searchsorted(cgrid, p.home[pupil], side="left")
        hi = np.searchsorted(cgrid, p.home[pupil], side="right")
        size = hi - lo
        pick_local = lo + np.floor(rng.random(len(pupil)) * np.maximum(size, 1)).astype(np.int64)
        pick_any = rng.integers(0, max(len(cand), 1), size=len(pupil))
        pick = np.where(size > 0, pick_local, pick_any)
        parents.append(cand[pick] if len(cand) else np.zeros(len(pupil), dtype=np.int64))
    father_missing = rng.random(len(pupil)) < 0.1
    grade = np.clip(p.age[pupil] - 5, 1, 12)
    ref_date = c.reference_date
    school_year = ref_date.year if ref_date.month >= 9 else ref_date.year - 1
    enrolled = np.array(
        [day_number(dt.date(school_year - g, 9, 1)) for g in range(12)], dtype=np.int64
    )[grade - 1]
    school = city.random_grid_in_district(rng, city.grid_district[p.home[pupil]])
    student = ch.id_col(pupil, rng)
    mother = ch.id_col(parents[0], rng)
    father = ch.id_col(parents[1], rng)
    return pa.table(
        {
            "student_id_number": student.values,
            "student_name": _take(p.names, pupil),
            "sex": _take(ch.sex_mf, pupil),
            "birth_date": _take(ch.birth, pupil),
            "school_grid": ch.grids(school),
            "grade": pa.array(grade, pa.int32()),
            "parent1_id_number": mother.values,
            "parent2_id_number": pc.if_else(
                pa.array(father_missing), pa.nulls(len(pupil), pa.string()), father.values
            ),
            "enrolled_on": _dates(enrolled),
        }
    )


# --- district nodes ----------------------------------------------------------------------------


def district_population(ch: Chunk) -> tuple[pa.Table, np.ndarray]:
    """Living in-city people with their true home grid; also returns each row's district."""
    p = ch.people
    person = np.flatnonzero(p.alive & ~p.left)
    age = p.age[person]
    band = np.searchsorted(np.array([15, 25, 45, 60, 80]), age, side="right")
    employed = p.employed[person] & (p.job_end[person] == NO)
    table = pa.table(
        {
            "id_number": _take(p.ids, person),
            "sex": _take(ch.sex_mf, person),
            "age": pa.array(age, pa.int32()),
            "age_band": _take(pa.array(["0-14", "15-24", "25-44", "45-59", "60-79", "80+"]), band),
            "grid": ch.grids(p.home[person]),
            "is_migrant": pa.array(p.migrant[person]),
            "employed": pa.array(employed),
            "monthly_income": pa.array(np.where(employed, p.wage[person], 0.0), pa.float64()),
            "household_size": pa.array(p.household_size[person], pa.int32()),
        }
    )
    return table, ch.city.grid_district[p.home[person]]
