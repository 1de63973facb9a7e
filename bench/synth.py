"""Benchmark the synthetic-city generator: people per second and peak memory.

Runs ``synthesize()`` in a child process (so the peak RSS measured is the generator's own, not
this script's) into a temporary directory, then prints a summary and, as its last line, one JSON
object: ``{"bench": "synth", "people": ..., "seconds": ..., "people_per_s": ..., "peak_mib": ...}``.

    python bench/synth.py                 # 1,000,000 people
    python bench/synth.py --quick         # 200,000 people
    python bench/synth.py --people 10000000 --chunk-size 500000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

QUICK_PEOPLE = 200_000
DEFAULT_PEOPLE = 1_000_000


def _child(people: int, seed: int, chunk_size: int, out: Path) -> None:
    """Inside the child: generate and report the generator's own wall time."""
    from synthetic_city import SynthConfig, synthesize

    config = SynthConfig(people=people, seed=seed, chunk_size=chunk_size)
    summary = synthesize(
        config, out, progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True)
    )
    rows = sum(summary.rows.values())
    print(json.dumps({"seconds": summary.seconds, "rows": rows}))


def _dir_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PEOPLE:,} people")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chunk-size", type=int, default=500_000)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    people = args.people or (QUICK_PEOPLE if args.quick else DEFAULT_PEOPLE)
    if args.child is not None:
        _child(people, args.seed, args.chunk_size, args.child)
        return 0

    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        out = Path(tmp) / "city"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--people",
            str(people),
            "--seed",
            str(args.seed),
            "--chunk-size",
            str(args.chunk_size),
            "--child",
            str(out),
        ]
        print(f"synthesising {people:,} people (seed {args.seed}) ...", file=sys.stderr)
        proc = subprocess.run(cmd, cwd=repo, stdout=subprocess.PIPE, text=True, check=True)
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size_mib = _dir_mib(out)
    seconds = float(child["seconds"])
    result = {
        "bench": "synth",
        "people": people,
        "seconds": round(seconds, 2),
        "people_per_s": round(people / seconds),
        "peak_mib": round(peak_mib, 1),
    }
    print(
        f"{people:,} people in {seconds:.1f}s = {people / seconds:,.0f} people/s; "
        f"{child['rows']:,} rows, {size_mib:,.0f} MiB on disk; peak RSS {peak_mib:,.0f} MiB"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
