"""``datalab bench NAME [args]``: run ``bench/NAME.py`` from a source checkout."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def available() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_"))


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"one of: {', '.join(available()) or '(none found)'}")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark")


def run_bench_command(args: argparse.Namespace) -> int:
    path = BENCH_DIR / f"{args.name}.py"
    if not path.exists():
        print(
            f"datalab bench: no benchmark {args.name!r}; available: {', '.join(available())}",
            file=sys.stderr,
        )
        return 2
    sys.argv = [str(path), *args.args]
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
