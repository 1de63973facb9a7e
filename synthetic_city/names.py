"""Plausible Chinese names in Hanzi: a weighted surname plus one or two given-name characters.

Names matter beyond looks: where an agency lost the ID number, matching falls back to a cascade
on name + birth date + sex, so names must be varied enough that this cascade mostly finds one
person, and occasionally several, as it does in real registers.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthetic_city.origins import GIVEN_COMMON, GIVEN_FEMALE, GIVEN_MALE, SURNAMES

#: Share of given names with two characters (the rest have one).
TWO_CHAR_SHARE = 0.8


@cache
def _tables() -> tuple[pa.Array, np.ndarray, pa.Array, pa.Array]:
    surnames = pa.array([s for s, _ in SURNAMES])
    weights = np.array([f for _, f in SURNAMES])
    given: list[pa.Array] = []
    for specific in (GIVEN_MALE, GIVEN_FEMALE):
        chars = sorted(set(GIVEN_COMMON + specific))
        singles = list(chars)
        pairs = [a + b for a in chars for b in chars if a != b]
        given.append(pa.array(singles + pairs))
    return surnames, weights / weights.sum(), given[0], given[1]


def make_names(rng: np.random.Generator, female: np.ndarray) -> pa.StringArray:
    """One name per person; ``female`` is a boolean array."""
    surnames, weights, male_given, female_given = _tables()
    n = len(female)
    sur = surnames.take(pa.array(rng.choice(len(surnames), size=n, p=weights)))
    two = rng.random(n) < TWO_CHAR_SHARE
    out_given: list[pa.Array] = []
    for table, specific in ((male_given, GIVEN_MALE), (female_given, GIVEN_FEMALE)):
        n_single = len(set(GIVEN_COMMON + specific))
        idx = np.where(
            two,
            n_single + rng.integers(0, len(table) - n_single, size=n),
            rng.integers(0, n_single, size=n),
        )
        out_given.append(table.take(pa.array(idx)))
    given = pc.if_else(pa.array(female), out_given[1], out_given[0])
    return pc.binary_join_element_wise(sur, given, "")
