"""The synthetic city: ``synthesize(config, out_dir)`` writes one folder per agency (datasets and a
``manifest.json`` a node agent loads as-is), one per district, ``geography.parquet`` and the
ground truth in ``truth/``. See docs/synthetic-city.md for what is generated and every knob.

A package of its own beside the entry points: the demo, the tests and the benchmarks use it; the
hub, the nodes and the recipes never do (a city's real data must not depend on it).

People are generated in chunks, each stage of each chunk with its own generator derived from the
seed, and every dataset is appended chunk by chunk, so memory is bounded by the chunk size and the
same seed and config always give the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datalab import __version__
from synthetic_city import agencies as ag
from synthetic_city.areas import City, build_city
from synthetic_city.campaign import verification_outcomes
from synthetic_city.config import SynthConfig
from synthetic_city.people import IdAllocator, day_number, make_people
from synthetic_city.schema import AGENCIES, DISTRICT_DATASETS, district_folder, manifest
from synthetic_city.truth import FLAGS_SCHEMA, PEOPLE_SCHEMA, flag_masks, flags_table, people_table
from synthetic_city.writer import OutputTree, staged_directory, write_table

__all__ = ["SynthConfig", "SynthSummary", "synthesize"]


#: Stage numbers: each (chunk, stage) pair gets its own random stream.
STAGES = (
    "people",
    "tenancy",
    "employment",
    "contributions",
    "conditions",
    "health",
    "benefits",
    "activity",
    "forced",
    "education",
    "verification",
)


@dataclass(frozen=True)
class SynthSummary:
    out_dir: Path
    people: int
    seed: int
    districts: list[str]
    grids: int
    seconds: float
    #: rows per "folder/dataset"
    rows: dict[str, int] = field(default_factory=dict)
    #: true flags per flag type
    flags: dict[str, int] = field(default_factory=dict)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def synthesize(
    config: SynthConfig,
    out_dir: Path | str,
    progress: Callable[[str], None] | None = None,
    *,
    force: bool = False,
) -> SynthSummary:
    """Generate the city described by ``config`` into ``out_dir`` (created; must be empty or
    absent unless ``force``). Progress messages never contain identifiers."""
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    out = Path(out_dir)
    with staged_directory(out, force) as root:
        city = build_city(config, _rng(config.seed, 0))
        say(
            f"geography: {len(city.district_codes)} districts, {city.n_grids} grids, "
            f"{int(city.grid_uv.sum())} in urban villages"
        )
        write_table(root / "geography.parquet", city.table)
        tree = OutputTree(root, config.format)
        for agency, (_, _, datasets) in AGENCIES.items():
            for ds in datasets:
                tree.open(agency, ds)
        for code in city.district_codes:
            for ds in DISTRICT_DATASETS:
                tree.open(district_folder(code), ds)
        tree.open_raw("truth", "people", PEOPLE_SCHEMA)
        tree.open_raw("truth", "flags", FLAGS_SCHEMA)
        flag_counts = {"missed_registration": 0, "should_cancel": 0, "separation": 0}
        try:
            allocator = IdAllocator(day_number(config.reference_date))
            n_chunks = -(-config.people // config.chunk_size)
            for i in range(n_chunks):
                offset = i * config.chunk_size
                n = min(config.chunk_size, config.people - offset)
                counts = _chunk(config, city, tree, allocator, i, offset, n)
                tree.flush()
                for key, value in counts.items():
                    flag_counts[key] += value
                say(
                    f"chunk {i + 1}/{n_chunks}: {offset + n:,} people "
                    f"({time.perf_counter() - started:.1f}s)"
                )
        finally:
            tree.close()
        _write_manifests(tree, city, config)
    seconds = time.perf_counter() - started
    rows = {f"{folder}/{name}": sink.rows for (folder, name), sink in tree.sinks.items()}
    say(f"done: {config.people:,} people in {seconds:.1f}s")
    return SynthSummary(
        out_dir=out.absolute(),
        people=config.people,
        seed=config.seed,
        districts=list(city.district_codes),
        grids=city.n_grids,
        seconds=seconds,
        rows=rows,
        flags=flag_counts,
    )


def _chunk(
    config: SynthConfig,
    city: City,
    tree: OutputTree,
    allocator: IdAllocator,
    index: int,
    offset: int,
    n: int,
) -> dict[str, int]:
    """Generate and write one chunk of people; return its true flag counts."""
    rngs = {stage: _rng(config.seed, 1, index, s) for s, stage in enumerate(STAGES)}
    people = make_people(config, city, rngs["people"], offset, n, allocator)
    ch = ag.Chunk.build(config, city, people)

    tree.get("public_security", "registrations").write(ag.registrations(ch))
    ten = ag.tenancy(ch, rngs["tenancy"])
    tree.get("housing", "tenancy_contracts").write(ten.table)
    tree.get("hrss", "employment").write(ag.employment(ch, rngs["employment"]))
    con = ag.contributions(ch, rngs["contributions"])
    tree.get("hrss", "contributions").write(con.table)
    cond = ag.conditions(ch, rngs["conditions"])
    tree.get("health", "health_records").write(ag.health_records(ch, cond, rngs["health"]))
    tree.get("health", "deaths").write(ag.deaths(ch))
    tree.get("civil_affairs", "benefits").write(ag.benefits(ch, cond, rngs["benefits"]))

    act = ag.activity(ch, rngs["activity"])
    masks = flag_masks(people, config.registration_min_age)
    unseen = np.flatnonzero(masks.missed & ~ten.current_at_home & (act.clean_home_nights == 0))
    forced = ag.forced_nights(ch, rngs["forced"], unseen)
    nights = act.clean_home_nights.copy()
    nights[unseen] += forced.num_rows // max(len(unseen), 1)
    activity_sink = tree.get("activity", "activity_events")
    activity_sink.write(act.table)
    activity_sink.write(forced)
    tree.get("education", "school_enrolment").write(ag.school_enrolment(ch, rngs["education"]))

    population, pop_district = ag.district_population(ch)
    outcomes, out_district = verification_outcomes(
        config, city, people, masks, rngs["verification"]
    )
    for d, code in enumerate(city.district_codes):
        folder = district_folder(code)
        tree.get(folder, "population").write(population.filter(pop_district == d))
        tree.get(folder, "verification_outcomes").write(outcomes.filter(out_district == d))

    tree.get("truth", "people").write(people_table(people, city))
    flags = flags_table(people, city, masks, ten.current_at_home, nights, con.clean_months)
    tree.get("truth", "flags").write(flags)
    return {
        "missed_registration": int(masks.missed.sum()),
        "should_cancel": int(masks.should_cancel.sum()),
        "separation": int(masks.separation.sum()),
    }


def _write_manifests(tree: OutputTree, city: City, config: SynthConfig) -> None:
    fmt = config.format
    generated_by = f"datalab synth {__version__} (seed {config.seed}, {config.people} people)"
    for agency, (title, description, datasets) in AGENCIES.items():
        specs = [
            ds.spec(f"{ds.name}.{fmt}", fmt, tree.get(agency, ds.name).rows) for ds in datasets
        ]
        manifest(agency, title, description, specs, generated_by).write(tree.root / agency)
    for code, name in zip(city.district_codes, city.district_names, strict=True):
        folder = district_folder(code)
        specs = [
            ds.spec(f"{ds.name}.{fmt}", fmt, tree.get(folder, ds.name).rows)
            for ds in DISTRICT_DATASETS
        ]
        manifest(
            folder,
            f"{name} ({code}) district node",
            "The district's population and its past verification outcomes.",
            specs,
            generated_by,
        ).write(tree.root / folder)
