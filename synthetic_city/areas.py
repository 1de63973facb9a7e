"""The city's grid hierarchy (city → district → street/town → community or urban village → grid),
sized from the number of people, and the employers placed on it.

Codes follow ``datalab.geography`` (4/6/9/12/15 characters, each a prefix of the next), and grids
are numbered in code order so that each district's grids form one contiguous index range, which
lets the people generator pick "a grid in the same district" with one multiply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from synthetic_city.config import SynthConfig
from synthetic_city.origins import CITY_CODE, CITY_NAME, DISTRICTS, PLACE_CHARS

#: Communities per street and grids per community are drawn uniformly from these ranges.
COMMUNITIES_PER_STREET = (6, 15)
GRIDS_PER_COMMUNITY = (3, 13)
#: Every district gets at least this many communities (one of them an urban village).
MIN_COMMUNITIES = 2


@dataclass(frozen=True)
class City:
    district_codes: list[str]
    district_names: list[str]
    #: per grid, in code order
    grid_codes: pa.StringArray
    grid_district: np.ndarray  # int16 district index
    grid_uv: np.ndarray  # bool: the grid lies in an urban village
    grid_weight: np.ndarray  # relative population density
    #: per district: first grid index and number of grids
    district_start: np.ndarray
    district_count: np.ndarray
    #: per employer: grid index, relative size
    employer_grid: np.ndarray
    employer_weight: np.ndarray
    #: the public geography table (all levels)
    table: pa.Table

    @property
    def n_grids(self) -> int:
        return len(self.grid_district)

    def random_grid_in_district(self, rng: np.random.Generator, district: np.ndarray) -> np.ndarray:
        """A uniformly chosen grid in each given district."""
        start = self.district_start[district]
        count = self.district_count[district]
        return (start + (rng.random(len(district)) * count).astype(np.int64)).astype(np.int32)


def _place_name(rng: np.random.Generator) -> str:
    a, b = rng.integers(0, len(PLACE_CHARS), size=2)
    return PLACE_CHARS[a] + PLACE_CHARS[b]


def build_city(config: SynthConfig, rng: np.random.Generator) -> City:
    """Lay out districts, streets, communities and grids for ``config.people`` people."""
    k = config.n_districts
    districts = sorted(DISTRICTS[:k])  # the k most populous, in code order
    dweights = np.array([w for _, _, w in districts])
    dweights = dweights / dweights.sum()
    n_grids = max(1, round(config.people / config.people_per_grid))
    min_grids = MIN_COMMUNITIES * GRIDS_PER_COMMUNITY[0]
    per_district = np.maximum(min_grids, np.round(dweights * n_grids).astype(int))

    Row = tuple[str, str, str, str | None, bool]
    rows: list[Row] = [(CITY_CODE, CITY_NAME, "city", None, False)]
    grid_codes: list[str] = []
    grid_district: list[int] = []
    grid_uv: list[bool] = []
    for d, (dcode, dname, _) in enumerate(districts):
        rows.append((dcode, dname, "district", CITY_CODE, False))
        # communities: sizes until the district's grid budget is spent
        sizes: list[int] = []
        remaining = int(per_district[d])
        while remaining > 0:
            size = int(rng.integers(*GRIDS_PER_COMMUNITY))
            if remaining - size < GRIDS_PER_COMMUNITY[0]:
                size = remaining
            sizes.append(size)
            remaining -= size
        while len(sizes) < MIN_COMMUNITIES:  # split the largest to have room for both kinds
            big = int(np.argmax(sizes))
            half = sizes[big] // 2
            sizes[big] -= half
            sizes.append(half)
        uv = rng.random(len(sizes)) < config.urban_village_community_share
        forced = int(rng.integers(0, len(sizes)))
        uv[forced] = True
        if uv.all():
            uv[(forced + 1) % len(uv)] = False
        street_no, community_no = 0, 0
        street_left = 0
        street_code = ""
        for c, size in enumerate(sizes):
            if street_left == 0:
                street_no += 1
                community_no = 0
                street_left = int(rng.integers(*COMMUNITIES_PER_STREET))
                street_code = f"{dcode}{street_no:03d}"
                suffix = "镇" if rng.random() < 0.2 else "街道"
                rows.append((street_code, _place_name(rng) + suffix, "street", dcode, False))
            street_left -= 1
            community_no += 1
            ccode = f"{street_code}{community_no:03d}"
            cname = _place_name(rng) + ("村" if uv[c] else "社区")
            rows.append((ccode, cname, "community", street_code, bool(uv[c])))
            for g in range(1, size + 1):
                gcode = f"{ccode}{g:03d}"
                rows.append((gcode, f"{cname}第{g}网格", "grid", ccode, bool(uv[c])))
                grid_codes.append(gcode)
                grid_district.append(d)
                grid_uv.append(bool(uv[c]))

    gd = np.array(grid_district, dtype=np.int16)
    guv = np.array(grid_uv, dtype=bool)
    weight = rng.lognormal(0.0, 0.35, size=len(gd))
    start = np.searchsorted(gd, np.arange(k)).astype(np.int64)
    count = np.bincount(gd, minlength=k).astype(np.int64)

    n_employers = max(20, config.people // config.people_per_employer)
    emp_p = weight * np.where(guv, 0.3, 1.0)
    emp_grid = rng.choice(len(gd), size=n_employers, p=emp_p / emp_p.sum()).astype(np.int32)
    emp_weight = rng.lognormal(0.0, 1.2, size=n_employers)

    codes, names, levels, parents, uvs = zip(*rows, strict=True)
    table = pa.table(
        {
            "code": pa.array(codes, pa.string()),
            "name": pa.array(names, pa.string()),
            "level": pa.array(levels, pa.string()),
            "parent_code": pa.array(parents, pa.string()),
            "is_urban_village": pa.array(uvs, pa.bool_()),
        }
    )
    return City(
        district_codes=[c for c, _, _ in districts],
        district_names=[n for _, n, _ in districts],
        grid_codes=pa.array(grid_codes, pa.string()),
        grid_district=gd,
        grid_uv=guv,
        grid_weight=weight,
        district_start=start,
        district_count=count,
        employer_grid=emp_grid,
        employer_weight=emp_weight / emp_weight.sum(),
        table=table,
    )
