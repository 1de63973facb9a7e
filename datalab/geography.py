"""The city's grid hierarchy: city → district → street → community → grid.

Area codes are nested digit strings, like China's administrative division codes, so the code of
an area's parent is a prefix of its own. Rolling a grid up to any level is then a prefix cut,
which every connector (DuckDB, PostgreSQL, Spark) can push down as ``substr(code, 1, n)``.
"""

from __future__ import annotations

from typing import Literal

Level = Literal["city", "district", "street", "community", "grid"]

#: Levels from coarsest to finest.
LEVELS: tuple[Level, ...] = ("city", "district", "street", "community", "grid")

#: Number of leading characters of a grid code that name the area at each level.
#: city 4401, district 440103, street 440103001, community 440103001001, grid 440103001001001.
CODE_LENGTH: dict[Level, int] = {
    "city": 4,
    "district": 6,
    "street": 9,
    "community": 12,
    "grid": 15,
}


def level_of(code: str) -> Level:
    """The level an area code names, from its length."""
    for level, length in CODE_LENGTH.items():
        if len(code) == length:
            return level
    raise ValueError(f"not an area code: {len(code)} characters (expected 4, 6, 9, 12 or 15)")


def roll_up(code: str, level: Level) -> str:
    """The code of the area at ``level`` that contains ``code``."""
    length = CODE_LENGTH[level]
    if len(code) < length:
        raise ValueError(f"cannot roll a {level_of(code)} code down to {level}")
    return code[:length]


def parent_level(level: Level) -> Level | None:
    """The next coarser level, or None for the city."""
    index = LEVELS.index(level)
    return LEVELS[index - 1] if index > 0 else None


def is_finer(a: Level, b: Level) -> bool:
    """True when level ``a`` is strictly finer than level ``b``."""
    return LEVELS.index(a) > LEVELS.index(b)
