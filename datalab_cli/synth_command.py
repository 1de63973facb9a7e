"""The ``datalab synth`` subcommand: argument definitions and the command itself, for the main
``datalab`` CLI to mount (and ``python -m synthetic_city`` to run standalone).

Bad input is refused before anything is written, with a message and exit code 2; the output is
built in a temporary sibling directory and renamed into place only when complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from synthetic_city import synthesize
from synthetic_city.config import MAX_DISTRICTS, SynthConfig, default_districts
from synthetic_city.writer import check_target

USAGE_ERROR = 2


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--people", type=int, default=20_000, help="people to generate")
    parser.add_argument("--seed", type=int, default=7, help="random seed (same seed, same bytes)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--format", choices=("parquet", "csv"), default="parquet", help="agency dataset format"
    )
    parser.add_argument(
        "--districts",
        type=int,
        default=None,
        help=f"number of districts (default: 4 up to 100k people, scaled up to {MAX_DISTRICTS})",
    )
    parser.add_argument(
        "--chunk-size", type=int, default=500_000, help="people generated per chunk (memory bound)"
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty output dir")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _fail(message: str) -> int:
    print(f"datalab synth: error: {message}", file=sys.stderr)
    return USAGE_ERROR


def run_synth_command(args: argparse.Namespace) -> int:
    """Run ``datalab synth`` with parsed ``args``; returns the exit code."""
    if args.people < 1:
        return _fail(f"--people must be a positive number (got {args.people})")
    if args.seed < 0:
        return _fail(f"--seed must be non-negative (got {args.seed})")
    if args.districts is not None and not 1 <= args.districts <= MAX_DISTRICTS:
        return _fail(f"--districts must be between 1 and {MAX_DISTRICTS} (got {args.districts})")
    if args.chunk_size < 1000:
        return _fail(f"--chunk-size must be at least 1000 (got {args.chunk_size})")
    try:
        check_target(Path(args.out), args.force)
    except FileExistsError as exc:
        return _fail(str(exc))
    try:
        config = SynthConfig(
            people=args.people,
            seed=args.seed,
            districts=args.districts,
            chunk_size=args.chunk_size,
            format=args.format,
        )
    except ValueError as exc:
        return _fail(str(exc))

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"synth: {message}", file=sys.stderr, flush=True)

    districts = config.districts or default_districts(config.people)
    progress(f"{config.people:,} people, seed {config.seed}, {districts} districts -> {args.out}")
    summary = synthesize(config, args.out, progress, force=args.force)
    flags = ", ".join(f"{k} {v:,}" for k, v in summary.flags.items())
    print(
        f"wrote {summary.people:,} people in {summary.seconds:.1f}s to {summary.out_dir}: "
        f"{len(summary.districts)} districts, {summary.grids:,} grids; true flags: {flags}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="datalab synth", description="Generate a synthetic city.")
    add_synth_arguments(parser)
    return run_synth_command(parser.parse_args(argv))
