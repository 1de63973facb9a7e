"""Ground truth: who truly lives and works where, and the three kinds of flag a matching recipe is
meant to find. Written to ``DIR/truth/``, which no node loads, so recipes can be scored.

Flags (one person can have at most one):

- ``should_cancel``: an active registration, but the person died or left the city.
  grid = the registered grid. Evidence: ``death_record`` or ``left_city``.
- ``separation``: alive and in the city, an active *household* registration in a grid other than
  the true home grid. grid = the registered grid (``home_grid`` says where they really live).
- ``missed_registration``: alive and in the city, aged ``registration_min_age`` or over, and no
  active registration in the true home grid (and not a separation). grid = the home grid.
  Evidence: any of ``tenancy`` (an open contract in the home grid), ``night_activity`` (night
  events in the home grid with the true ID) and ``contributions`` (paid with the true ID); the
  generator adds night events where needed so that every such flag has ``tenancy`` or
  ``night_activity`` evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthetic_city.areas import City
from synthetic_city.people import NO, People

MISSED, SHOULD_CANCEL, SEPARATION = 0, 1, 2
FLAG_NAMES = pa.array(["missed_registration", "should_cancel", "separation"])

PEOPLE_SCHEMA = pa.schema(
    [
        ("person", pa.int64()),
        ("id_number", pa.string()),
        ("name", pa.string()),
        ("sex", pa.string()),
        ("birth_date", pa.date32()),
        ("is_migrant", pa.bool_()),
        ("home_grid", pa.string()),
        ("work_grid", pa.string()),
        ("reg_grid", pa.string()),
        ("reg_type", pa.string()),
        ("alive", pa.bool_()),
        ("death_date", pa.date32()),
        ("left_city", pa.bool_()),
        ("left_on", pa.date32()),
        ("district", pa.string()),
    ]
)

FLAGS_SCHEMA = pa.schema(
    [
        ("person", pa.int64()),
        ("id_number", pa.string()),
        ("flag_type", pa.string()),
        ("grid", pa.string()),
        ("home_grid", pa.string()),
        ("evidence", pa.string()),
    ]
)


@dataclass(frozen=True)
class FlagMasks:
    missed: np.ndarray
    should_cancel: np.ndarray
    separation: np.ndarray

    def grid(self, p: People) -> np.ndarray:
        """The grid each flag concerns (registered grid, or home grid for missed)."""
        return np.where(self.missed, p.home, p.active_grid)


def flag_masks(p: People, min_age: int) -> FlagMasks:
    in_city = p.alive & ~p.left
    active = p.active_grid != NO
    should_cancel = active & ~in_city
    separation = in_city & active & ~p.migrant & (p.active_grid != p.home)
    registered_at_home = active & (p.active_grid == p.home)
    missed = in_city & (p.age >= min_age) & ~registered_at_home & ~separation
    return FlagMasks(missed=missed, should_cancel=should_cancel, separation=separation)


def _take(array: pa.Array, index: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return array.take(pa.array(index, type=pa.int64(), mask=null))


def _join(parts: list[tuple[str, np.ndarray]]) -> pa.Array:
    """Comma-joined names of the true ``parts`` per row, via a lookup of all combinations."""
    bits = np.zeros(len(parts[0][1]), dtype=np.int64)
    for i, (_, mask) in enumerate(parts):
        bits |= mask.astype(np.int64) << i
    combos = [
        ",".join(name for i, (name, _) in enumerate(parts) if code >> i & 1)
        for code in range(1 << len(parts))
    ]
    return _take(pa.array(combos), bits)


def flags_table(
    p: People,
    city: City,
    masks: FlagMasks,
    tenancy_at_home: np.ndarray,
    home_nights: np.ndarray,
    contribution_months: np.ndarray,
) -> pa.Table:
    grid = masks.grid(p)
    kind = np.full(len(p), NO, dtype=np.int64)
    kind[masks.missed] = MISSED
    kind[masks.should_cancel] = SHOULD_CANCEL
    kind[masks.separation] = SEPARATION
    person = np.flatnonzero(kind != NO)
    k = kind[person]
    tenancy, night = tenancy_at_home[person], home_nights[person] > 0
    contrib = contribution_months[person] > 0
    missed_ev = _join([("tenancy", tenancy), ("night_activity", night), ("contributions", contrib)])
    sep_ev = _join(
        [("household_registration", np.ones(len(person), bool)), ("tenancy", tenancy),
         ("night_activity", night)]
    )  # fmt: skip
    sc_ev = _take(pa.array(["left_city", "death_record"]), (~p.alive[person]).astype(np.int64))
    evidence = pc.if_else(
        pa.array(k == MISSED), missed_ev, pc.if_else(pa.array(k == SEPARATION), sep_ev, sc_ev)
    )
    home = np.where(p.left[person], NO, p.home[person])
    return pa.table(
        {
            "person": pa.array(p.offset + person, pa.int64()),
            "id_number": _take(p.ids, person),
            "flag_type": _take(FLAG_NAMES, k),
            "grid": _take(city.grid_codes, grid[person]),
            "home_grid": _take(city.grid_codes, home, home == NO),
            "evidence": evidence,
        },
        schema=FLAGS_SCHEMA,
    )


def people_table(p: People, city: City) -> pa.Table:
    n = len(p)
    idx = np.arange(n)
    home = np.where(p.left, NO, p.home)
    current_job = p.alive & ~p.left & (p.work != NO) & (p.job_end == NO)
    work = np.where(current_job, p.work, NO)
    active = p.active_grid != NO
    districts = pa.array(city.district_codes)
    return pa.table(
        {
            "person": pa.array(p.offset + idx, pa.int64()),
            "id_number": p.ids,
            "name": p.names,
            "sex": _take(pa.array(["M", "F"]), p.female.astype(np.int64)),
            "birth_date": pa.array(p.birth.astype(np.int32), pa.date32()),
            "is_migrant": pa.array(p.migrant),
            "home_grid": _take(city.grid_codes, home, home == NO),
            "work_grid": _take(city.grid_codes, work, work == NO),
            "reg_grid": _take(city.grid_codes, p.active_grid, ~active),
            "reg_type": _take(
                pa.array(["household", "floating"]), p.migrant.astype(np.int64), ~active
            ),
            "alive": pa.array(p.alive),
            "death_date": pa.array(p.death.astype(np.int32), pa.date32(), mask=p.death == NO),
            "left_city": pa.array(p.left),
            "left_on": pa.array(p.left_on.astype(np.int32), pa.date32(), mask=p.left_on == NO),
            "district": _take(districts, city.grid_district[p.home].astype(np.int64), p.left),
        },
        schema=PEOPLE_SCHEMA,
    )
