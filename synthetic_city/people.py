"""People and their life course: who they are, where they truly live and work, when they moved,
left or died, and what their registrations say.

Everything here is the truth. Agency datasets (``agencies.py``) are views of it with each agency's
formats and dirt; the flags (``truth.py``) are derived from it. Generation is per chunk of people
and fully vectorised; the only state shared between chunks is the ID sequence allocator, which
keeps IDs unique across the whole city.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from synthetic_city.areas import City
from synthetic_city.config import SynthConfig
from synthetic_city.ids import build_id_matrix, matrix_to_strings
from synthetic_city.names import make_names
from synthetic_city.origins import DISTRICTS, migrant_regions

EPOCH = dt.date(1970, 1, 1)
YEAR = 365.2425
#: Age-band edges (years); the last band is open (80+, drawn up to 99).
BAND_EDGES = (0, 15, 25, 45, 60, 80, 100)
#: Oldest person the allocator has room for.
MAX_AGE_YEARS = 101
#: Sequences per (region, birth date, sex): 499 (odd 001-997 male, even 002-998 female).
SEQ_SLOTS = 499
NO = -1  # "no date" / "no grid" in int arrays


def day_number(d: dt.date) -> int:
    return (d - EPOCH).days


def ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month, day of day numbers since 1970-01-01."""
    d64 = days.astype("datetime64[D]")
    month_start = d64.astype("datetime64[M]")
    year = d64.astype("datetime64[Y]").astype(np.int64) + 1970
    month = month_start.astype(np.int64) % 12 + 1
    day = (d64 - month_start).astype(np.int64) + 1
    return year, month, day


class IdAllocator:
    """Hands out ID sequence numbers so that no two people share an ID, across all chunks.

    It counts people per (region, birth date, sex) in a dense ``uint8`` table (about 45 MB for
    the ~600 region codes) and scrambles the running count with a per-key affine permutation of
    the 499 slots, so sequences look random but never collide.
    """

    def __init__(self, reference_day: int) -> None:
        local = np.array([int(c) for c, _, _ in DISTRICTS], dtype=np.int64)
        migrant, _ = migrant_regions()
        self.regions = np.concatenate([local, migrant])
        self.region_index = {int(r): i for i, r in enumerate(self.regions)}
        self.first_day = reference_day - int(MAX_AGE_YEARS * YEAR) - 1
        self.n_days = reference_day - self.first_day + 1
        self.counts = np.zeros(len(self.regions) * self.n_days * 2, dtype=np.uint8)

    def allocate(self, region_idx: np.ndarray, birth: np.ndarray, female: np.ndarray) -> np.ndarray:
        keys = (region_idx.astype(np.int64) * self.n_days + (birth - self.first_day)) * 2 + female
        n = len(keys)
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        first = np.ones(n, dtype=bool)
        first[1:] = sk[1:] != sk[:-1]
        starts = np.flatnonzero(first)
        grp_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - grp_start
        m = self.counts[keys].astype(np.int64) + rank
        if n and m.max() >= min(SEQ_SLOTS, 255):
            raise OverflowError("too many people share a region, birth date and sex")
        sizes = np.diff(np.append(starts, n))
        self.counts[sk[starts]] += sizes.astype(np.uint8)
        scrambled = (m * 37 + (keys * 2654435761) % SEQ_SLOTS) % SEQ_SLOTS
        return np.where(female, 2 * scrambled + 2, 2 * scrambled + 1)


@dataclass
class Registrations:
    """Registration rows (public security) of a chunk; ``person`` is the index in the chunk."""

    person: np.ndarray
    grid: np.ndarray
    registered_on: np.ndarray
    cancelled_on: np.ndarray  # NO while active

    @property
    def active(self) -> np.ndarray:
        return self.cancelled_on == NO


@dataclass
class People:
    """One chunk of people (arrays of equal length) and their registrations."""

    offset: int  # global index of the first person
    migrant: np.ndarray
    female: np.ndarray
    birth: np.ndarray  # day number
    age: np.ndarray  # completed years on the reference date
    id_mat: np.ndarray  # (n, 18) ASCII
    ids: pa.StringArray
    names: pa.StringArray
    home: np.ndarray  # grid index: where they live (lived, for the dead and the leavers)
    alive: np.ndarray
    death: np.ndarray  # day number or NO
    left: np.ndarray
    left_on: np.ndarray
    arrived: np.ndarray  # migrants: arrival in the city; locals: NO
    prev: np.ndarray  # grid before an in-city move, or NO
    moved_on: np.ndarray
    employed: np.ndarray  # had a job in the city (ended if dead or left)
    insured: np.ndarray  # the job is formal, known to HRSS
    employer: np.ndarray
    work: np.ndarray  # grid of the job or NO
    job_start: np.ndarray
    job_end: np.ndarray  # NO while current
    wage: np.ndarray
    renter: np.ndarray
    household_size: np.ndarray
    regs: Registrations
    active_grid: np.ndarray  # grid of the person's active registration, or NO

    def __len__(self) -> int:
        return len(self.migrant)

    @property
    def in_city(self) -> np.ndarray:
        """Alive and still living in the city on the reference date."""
        return self.alive & ~self.left

    @property
    def pidx(self) -> np.ndarray:
        return np.arange(self.offset, self.offset + len(self), dtype=np.int64)


def _pick_homes(rng: np.random.Generator, city: City, n: int, uv_share: np.ndarray) -> np.ndarray:
    """Home grids: urban-village grids with probability ``uv_share`` each, weighted by density."""
    out = np.empty(n, dtype=np.int32)
    to_uv = rng.random(n) < uv_share
    for want_uv in (True, False):
        pool = np.flatnonzero(city.grid_uv == want_uv)
        sel = to_uv == want_uv
        if not len(pool):
            pool = np.arange(city.n_grids)
        p = city.grid_weight[pool] / city.grid_weight[pool].sum()
        out[sel] = pool[rng.choice(len(pool), size=int(sel.sum()), p=p)]
    return out


def _between(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A uniform day in [lo, hi] (hi clipped up to lo)."""
    hi = np.maximum(hi, lo)
    return (lo + np.floor(rng.random(len(lo)) * (hi - lo + 1))).astype(np.int64)


def _lag(rng: np.random.Generator, n: int, mean_days: float) -> np.ndarray:
    return np.ceil(rng.exponential(mean_days, size=n)).astype(np.int64)


def make_people(
    config: SynthConfig,
    city: City,
    rng: np.random.Generator,
    offset: int,
    n: int,
    allocator: IdAllocator,
) -> People:
    """Generate ``n`` people (global indices ``offset`` ...) and their life course."""
    ref = day_number(config.reference_date)
    c = config

    # --- who ----------------------------------------------------------------------------
    migrant = rng.random(n) < c.migrant_share
    female = rng.random(n) < np.where(migrant, 0.47, 0.49)
    bands = np.where(
        migrant,
        rng.choice(6, size=n, p=np.array(c.migrant_age_bands)),
        rng.choice(6, size=n, p=np.array(c.local_age_bands)),
    )
    lo = np.array(BAND_EDGES[:-1])[bands]
    hi = np.array(BAND_EDGES[1:])[bands]
    years = lo + np.floor(rng.random(n) * (hi - lo)).astype(np.int64)
    old = bands == 5  # 80+: ages thin out quickly
    years[old] = np.minimum(80 + np.floor(rng.exponential(5.0, size=int(old.sum()))), 99)
    birth = (ref - np.floor((years + rng.random(n)) * YEAR)).astype(np.int64)
    by, bm, bd = ymd(birth)
    ry, rm, rd = config.reference_date.year, config.reference_date.month, config.reference_date.day
    age = ry - by - ((bm * 100 + bd) > (rm * 100 + rd)).astype(np.int64)

    # --- where they live ------------------------------------------------------------------
    home = _pick_homes(
        rng, city, n, np.where(migrant, c.migrant_urban_village_share, c.local_urban_village_share)
    )
    district = city.grid_district[home]

    # --- national ID ----------------------------------------------------------------------
    mig_codes, mig_p = migrant_regions()
    local_codes = np.array([int(code) for code in city.district_codes], dtype=np.int64)
    born_here = ~migrant & (rng.random(n) < c.local_born_here_share)
    own_district = rng.random(n) < 0.7
    birth_district = np.where(own_district, district, rng.integers(0, len(local_codes), size=n))
    in_province = np.flatnonzero(mig_codes // 10_000 == 44)
    region = np.where(
        migrant,
        mig_codes[rng.choice(len(mig_codes), size=n, p=mig_p)],
        np.where(
            born_here,
            local_codes[birth_district],
            mig_codes[in_province[rng.integers(0, len(in_province), size=n)]],
        ),
    )
    uniq, inverse = np.unique(region, return_inverse=True)
    region_idx = np.array([allocator.region_index[int(r)] for r in uniq], dtype=np.int64)[inverse]
    seq = allocator.allocate(region_idx, birth, female.astype(np.int64))
    id_mat = build_id_matrix(region, by * 10000 + bm * 100 + bd, seq)
    ids = matrix_to_strings(id_mat)
    names = make_names(rng, female)

    # --- life course: death, leaving, arrival, moves ----------------------------------------
    window = c.death_window_years
    q = np.minimum(0.5, 0.0004 * np.exp(0.09 * (age - 30)))
    dead = rng.random(n) < 1 - (1 - q) ** window
    death = np.where(
        dead, np.maximum(birth + 1, ref - 1 - np.floor(rng.random(n) * window * YEAR)), NO
    ).astype(np.int64)
    left = ~dead & (rng.random(n) < np.where(migrant, c.migrant_left_share, c.local_left_share))
    arrived = np.where(
        migrant, np.maximum(birth, ref - 60 - np.floor(rng.random(n) * 12 * YEAR)), NO
    ).astype(np.int64)
    arrived = np.where(migrant & left, np.minimum(arrived, ref - 400), arrived)
    arrived = np.where(migrant & dead, np.minimum(arrived, death - 30), arrived)
    start = np.where(migrant, arrived, birth)
    left &= start + 30 <= ref - 45
    leave_lo = np.maximum(start + 30, ref - int(4 * YEAR))
    left_on = np.where(left, _between(rng, leave_lo, np.full(n, ref - 45)), NO)
    end_of_stay = np.where(dead, death, np.where(left, left_on, ref))
    alive = ~dead
    in_city = alive & ~left
    move_lo = start + 30
    can_move = in_city & (ref - 30 - move_lo > 60)
    moved = can_move & (
        rng.random(n) < np.where(migrant, c.migrant_moved_share, c.local_moved_share)
    )
    moved_on = np.where(moved, _between(rng, move_lo, np.full(n, ref - 30)), NO)
    prev_raw = _pick_homes(rng, city, n, np.where(migrant, c.migrant_urban_village_share, 0.1))
    prev_raw = np.where(prev_raw == home, (prev_raw + 1) % city.n_grids, prev_raw)
    prev = np.where(moved, prev_raw, NO).astype(np.int32)

    # --- work ---------------------------------------------------------------------------
    working_age = (age >= 18) & (age <= 59)
    employed = working_age & (
        rng.random(n) < np.where(migrant, c.migrant_employment_rate, c.local_employment_rate)
    )
    insured = employed & (
        rng.random(n) < np.where(migrant, c.migrant_insured_share, c.local_insured_share)
    )
    employer = np.where(
        employed, rng.choice(len(city.employer_grid), size=n, p=city.employer_weight), NO
    ).astype(np.int32)
    work = np.where(employed, city.employer_grid[np.maximum(employer, 0)], NO).astype(np.int32)
    adult_from = birth + int(18 * YEAR)
    job_lo = np.maximum(np.maximum(adult_from, start), ref - int(8 * YEAR))
    job_end = np.where(employed & (dead | left), end_of_stay - 1, NO)
    job_hi = np.where(job_end > 0, job_end, ref) - 30
    job_start = np.where(employed, _between(rng, job_lo, job_hi), NO)
    job_start = np.where(job_end != NO, np.minimum(job_start, job_end - 1), job_start)
    wage = np.where(
        employed,
        np.round(rng.lognormal(np.where(migrant, 8.6, 8.9), np.where(migrant, 0.4, 0.5)), -1),
        0.0,
    )
    renter = rng.random(n) < np.where(migrant, c.migrant_renter_share, c.local_renter_share)
    household_size = np.where(
        migrant,
        rng.choice(np.arange(1, 7), size=n, p=[0.35, 0.30, 0.20, 0.10, 0.04, 0.01]),
        rng.choice(np.arange(1, 7), size=n, p=[0.15, 0.28, 0.27, 0.18, 0.08, 0.04]),
    ).astype(np.int32)

    regs, active_grid = _registrations(
        c, rng, ref, migrant, birth, born_here, home, prev, moved, moved_on, arrived, dead, death,
        left, left_on, end_of_stay,
    )  # fmt: skip
    return People(
        offset=offset,
        migrant=migrant,
        female=female,
        birth=birth,
        age=age,
        id_mat=id_mat,
        ids=ids,
        names=names,
        home=home,
        alive=alive,
        death=death,
        left=left,
        left_on=left_on,
        arrived=arrived,
        prev=prev,
        moved_on=moved_on,
        employed=employed,
        insured=insured,
        employer=employer,
        work=work,
        job_start=job_start,
        job_end=job_end,
        wage=wage,
        renter=renter,
        household_size=household_size,
        regs=regs,
        active_grid=active_grid,
    )


def _registrations(
    c: SynthConfig,
    rng: np.random.Generator,
    ref: int,
    migrant: np.ndarray,
    birth: np.ndarray,
    born_here: np.ndarray,
    home: np.ndarray,
    prev: np.ndarray,
    moved: np.ndarray,
    moved_on: np.ndarray,
    arrived: np.ndarray,
    dead: np.ndarray,
    death: np.ndarray,
    left: np.ndarray,
    left_on: np.ndarray,
    end_of_stay: np.ndarray,
) -> tuple[Registrations, np.ndarray]:
    """At most two registration rows per person: the first (possibly cancelled by a move or an
    end of stay) and, for movers who re-registered, one at the new home."""
    n = len(migrant)
    # first registration: locals always (household), migrants if they bothered (floating)
    has1 = ~migrant | (rng.random(n) < c.migrant_registered_share)
    local_on = np.where(
        born_here, birth, np.maximum(birth, ref - np.floor(rng.random(n) * 30 * YEAR))
    )
    mig_on = arrived + _lag(rng, n, 60.0)
    on1 = np.minimum(np.where(migrant, mig_on, local_on), np.minimum(end_of_stay, ref) - 1)
    on1 = np.maximum(on1, birth)
    at_prev = moved & (on1 < moved_on)
    grid1 = np.where(at_prev, prev, home)
    # movers who moved their registration along
    rereg = at_prev & (
        rng.random(n) < np.where(migrant, c.migrant_reregister_share, c.local_reregister_share)
    )
    cancel1 = np.where(rereg, np.minimum(moved_on + _lag(rng, n, 20.0), ref - 1), NO)
    on2 = np.where(rereg, np.minimum(moved_on + _lag(rng, n, 30.0), ref - 1), NO)
    # end of stay: the last registration may be cancelled, late or never
    last_cancel = np.full(n, NO, dtype=np.int64)
    death_cancel = dead & (rng.random(n) < c.death_cancel_share)
    last_cancel = np.where(death_cancel, death + _lag(rng, n, c.death_cancel_lag_days), last_cancel)
    left_cancel = left & (
        rng.random(n) < np.where(migrant, c.migrant_left_cancel_share, c.local_left_cancel_share)
    )
    last_cancel = np.where(left_cancel, left_on + _lag(rng, n, 30.0), last_cancel)
    last_cancel = np.where(last_cancel > ref, NO, last_cancel)  # the update has not arrived yet
    cancel1 = np.where(rereg, cancel1, last_cancel)
    cancel2 = np.where(rereg, last_cancel, NO)

    p1 = np.flatnonzero(has1)
    p2 = np.flatnonzero(has1 & rereg)
    person = np.concatenate([p1, p2])
    order = np.argsort(person, kind="stable")
    regs = Registrations(
        person=person[order],
        grid=np.concatenate([grid1[p1], home[p2]]).astype(np.int32)[order],
        registered_on=np.concatenate([on1[p1], on2[p2]])[order],
        cancelled_on=np.concatenate([cancel1[p1], cancel2[p2]])[order],
    )
    active_grid = np.full(n, NO, dtype=np.int32)
    act = regs.active
    active_grid[regs.person[act]] = regs.grid[act]
    return regs, active_grid
