"""Outcomes of a past verification campaign, held by each district: flagged people that grid
workers went to check, with what the flag looked like beforehand and whether it was confirmed.

The sample mixes true flags with false suspects (people the matching wrongly flagged) so that the
confirmation rate lands on the seed's campaign yield (58.61% by default), and the feature columns
differ between true and false flags the way the matching evidence would (nights seen, tenancy,
contributions, registration age), noisily, so a ranking model can learn to lift the yield but not
to be perfect. Grid workers also err: a true flag is confirmed with probability
``verification_true_positive`` and a false one with ``verification_false_positive``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from synthetic_city.areas import City
from synthetic_city.config import SynthConfig
from synthetic_city.people import NO, People
from synthetic_city.truth import FLAG_NAMES, MISSED, SEPARATION, SHOULD_CANCEL, FlagMasks

#: Per flag type, (value if the flag is true, value if false) of: mean nights seen in the grid in
#: 30 days, P(tenancy in the grid), monthly P(contribution), mean days since registration update.
FEATURE_PARAMS: dict[int, tuple[tuple[float, float], ...]] = {
    MISSED: ((10.0, 6.0), (0.55, 0.35), (0.4, 0.25), (500.0, 800.0)),
    SHOULD_CANCEL: ((2.0, 6.0), (0.15, 0.3), (0.15, 0.35), (1200.0, 800.0)),
    SEPARATION: ((3.0, 7.0), (0.2, 0.3), (0.35, 0.45), (2000.0, 1400.0)),
}


def verification_outcomes(
    config: SynthConfig,
    city: City,
    p: People,
    masks: FlagMasks,
    rng: np.random.Generator,
) -> tuple[pa.Table, np.ndarray]:
    """The campaign's rows for this chunk, and the district index of each row."""
    in_city = p.alive & ~p.left
    registered_at_home = (p.active_grid != NO) & (p.active_grid == p.home)
    false_pools = {
        MISSED: in_city & (p.age >= config.registration_min_age) & registered_at_home,
        SHOULD_CANCEL: in_city & (p.active_grid != NO),
        SEPARATION: in_city & ~p.migrant & registered_at_home,
    }
    true_masks = {
        MISSED: masks.missed,
        SHOULD_CANCEL: masks.should_cancel,
        SEPARATION: masks.separation,
    }
    true_share = config.verification_true_share
    persons, kinds, truths = [], [], []
    for kind in (MISSED, SHOULD_CANCEL, SEPARATION):
        sampled = rng.random(len(p)) < config.verification_sample_share
        true = np.flatnonzero(true_masks[kind] & sampled)
        pool = np.flatnonzero(false_pools[kind])
        k = min(len(pool), round(len(true) * (1 - true_share) / true_share))
        false = np.sort(rng.choice(pool, size=k, replace=False)) if k else pool[:0]
        persons += [true, false]
        kinds += [np.full(len(true) + k, kind)]
        truths += [np.ones(len(true), bool), np.zeros(k, bool)]
    person = np.concatenate(persons)
    kind = np.concatenate(kinds)
    truth = np.concatenate(truths)
    m = len(person)

    def param(i: int) -> np.ndarray:
        table = np.array([FEATURE_PARAMS[k][i] for k in (MISSED, SHOULD_CANCEL, SEPARATION)])
        return np.where(truth, table[kind, 0], table[kind, 1])

    nights = rng.poisson(param(0))
    tenancy = rng.random(m) < param(1)
    months = rng.binomial(12, param(2))
    days = np.floor(rng.exponential(param(3))).astype(np.int64)
    confirmed = rng.random(m) < np.where(
        truth, config.verification_true_positive, config.verification_false_positive
    )
    grid = np.where(kind == MISSED, p.home[person], p.active_grid[person]).astype(np.int64)
    numbers = p.offset * 4 + np.arange(m, dtype=np.int64)
    flag_ids = pa.array([f"VF{x:012d}" for x in numbers], pa.string())
    table = pa.table(
        {
            "flag_id": flag_ids,
            "id_number": p.ids.take(pa.array(person, pa.int64())),
            "flag_type": FLAG_NAMES.take(pa.array(kind, pa.int64())),
            "grid": city.grid_codes.take(pa.array(grid)),
            "nights_seen_30d": pa.array(nights, pa.int32()),
            "has_tenancy": pa.array(tenancy),
            "contribution_months_12": pa.array(months, pa.int32()),
            "age": pa.array(p.age[person], pa.int32()),
            "is_migrant": pa.array(p.migrant[person]),
            "days_since_reg_update": pa.array(days, pa.int32()),
            "confirmed": pa.array(confirmed),
        }
    )
    return table, city.grid_district[grid]
