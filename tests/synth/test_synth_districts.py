"""District nodes partition the living in-city population by their true home grid."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .conftest import read


def test_district_populations_partition_the_living(out: Path) -> None:
    people = read(out, "truth/people.parquet").to_pandas()
    living = people[people.alive & ~people.left_city]
    parts = []
    for folder in sorted(out.glob("district_*")):
        code = folder.name.removeprefix("district_")
        pop = read(out, f"{folder.name}/population.parquet").to_pandas()
        assert pop.grid.str.startswith(code).all()
        parts.append(pop)
        outcomes = read(out, f"{folder.name}/verification_outcomes.parquet").to_pandas()
        assert outcomes.grid.str.startswith(code).all()
    allpop = pd.concat(parts)
    assert allpop.id_number.is_unique
    assert set(allpop.id_number) == set(living.id_number)
    merged = allpop.merge(living, on="id_number")
    assert (merged.grid == merged.home_grid).all()
    assert (merged.is_migrant_x == merged.is_migrant_y).all()
