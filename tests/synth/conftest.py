"""One synthetic city for the whole synth test session (synthesising is the slow part)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthetic_city import SynthConfig, SynthSummary, synthesize

PEOPLE = 20_000


@pytest.fixture(scope="session")
def config() -> SynthConfig:
    return SynthConfig(people=PEOPLE, seed=11, chunk_size=8_000)


@pytest.fixture(scope="session")
def city(
    tmp_path_factory: pytest.TempPathFactory, config: SynthConfig
) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("synth") / "city"
    summary = synthesize(config, out)
    return out, summary


@pytest.fixture(scope="session")
def out(city: tuple[Path, SynthSummary]) -> Path:
    return city[0]


def read(out: Path, rel: str) -> pa.Table:
    return pq.read_table(out / rel)
