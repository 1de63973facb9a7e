"""``datalab demo``: the whole lab on a synthetic city, end to end, in one command.

It plays every party in turn — the city's data bureau (synthesise, start the hub), each agency
(start its node, its admin approves the recipes its data can serve), the analyst (browse, run)
and the auditor (verify the log) — and prints what each of them would see.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from datalab.client import Lab
from datalab.errors import DatalabError
from datalab_cli.demo_matching import matching_session
from datalab_cli.local_lab import ANALYST, AUDITOR, LocalLab, free_port


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--people", type=int, default=50_000, help="city size (default 50000)")
    parser.add_argument("--seed", type=int, default=7, help="city seed (default 7)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="working folder for the city and the lab's state (default: a temporary folder; "
        "with --keep: ./demo-lab)",
    )
    parser.add_argument("--port", type=int, default=0, help="hub port (default: a free one)")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the lab running and print its URL and tokens for JupyterLab",
    )


def run_demo_command(args: argparse.Namespace) -> int:
    if args.people < 1000:
        print("datalab demo: error: --people must be at least 1000", file=sys.stderr)
        return 2
    work = args.dir or (Path("demo-lab") if args.keep else None)
    tmp = None
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="datalab-demo-")
        work = Path(tmp.name)
    work = work.resolve()
    try:
        return _demo(args, work)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _demo(args: argparse.Namespace, work: Path) -> int:
    from synthetic_city import SynthConfig, synthesize

    city = work / "city"
    stamp = work / "city.params"
    wanted = f"people={args.people} seed={args.seed}"
    started = time.monotonic()
    _heading(f"1. The city's data bureau synthesises a city of {args.people:,} people")
    if city.exists() and stamp.exists() and stamp.read_text() == wanted:
        print(f"   reusing {city}")
    else:
        if city.exists():
            shutil.rmtree(city)
        work.mkdir(parents=True, exist_ok=True)
        synthesize(SynthConfig(people=args.people, seed=args.seed), city)
        stamp.write_text(wanted)
    print(f"   wrote {city} (ground truth in {city / 'truth'}, which no node loads)")

    _heading("2. The hub starts; each agency starts its node and approves the demo recipes")
    state = work / "state"
    if state.exists():
        shutil.rmtree(state)
    # matching tasks at 50,000 people (one with five answering nodes) can take more than the
    # default minute on 2 busy cores
    lab = LocalLab(
        city_dir=city, state_dir=state, port=args.port or free_port(), node_timeout_s=300.0
    )
    lab.start(progress=True)
    try:
        _analyst_session(lab)
        matching_session(lab, city, "9. Cross-agency matching: suspected missed registrations")
        _auditor_session(lab)
        print(f"\nDemo finished in {time.monotonic() - started:.1f} s.")
        if args.keep:
            _print_keep(lab)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("\nstopping the lab")
        return 0
    finally:
        lab.stop()


def _analyst_session(lab: LocalLab) -> None:
    analyst = Lab(lab.url, lab.tokens[ANALYST])
    _heading("3. The analyst browses the catalogue (metadata only, never rows)")
    datasets = analyst.datasets()
    _print(datasets[["agency", "dataset", "kind", "rows", "columns", "node_status"]])

    _heading("4. Key groups by area: elderly per community (civil affairs)")
    _show(analyst.run("key_groups", group="elderly", level="community", progress=False), 12)

    _heading("5. Key groups by area: disability per grid (health), small cells suppressed")
    _show(
        analyst.run("key_groups", group="disability", level="grid", progress=False),
        10,
    )

    _heading("6. Federated aggregate over every district node: mean income by migrant status")
    _show(
        analyst.run(
            "aggregate",
            kind="district_population",
            measure="mean",
            column="monthly_income",
            group_by=["grid", "is_migrant"],
            level="district",
            progress=False,
        ),
        20,
    )

    _heading("7. Federated count of the over-60s per street, migrants only")
    _show(
        analyst.run(
            "aggregate",
            kind="district_population",
            group_by=["grid"],
            level="street",
            filters=[["age_band", "in", ["60-79", "80+"]], ["is_migrant", "eq", True]],
            progress=False,
        ),
        8,
    )

    _heading("8. What the lab refuses")
    attempts: list[tuple[str, dict[str, Any]]] = [
        (
            "group by a national ID",
            {"recipe": "aggregate", "kind": "district_population", "group_by": ["id_number"]},
        ),
        ("an unknown recipe", {"recipe": "dump_rows"}),
        (
            "a level that does not exist",
            {"recipe": "key_groups", "group": "elderly", "level": "building"},
        ),
    ]
    for what, call in attempts:
        recipe = call.pop("recipe")
        try:
            analyst.run(recipe, progress=False, **call)
            print(f"   ✗ {what}: NOT refused")
        except DatalabError as exc:
            print(f"   ✓ {what}: {type(exc).__name__}: {exc.message}")


def _auditor_session(lab: LocalLab) -> None:
    auditor = Lab(lab.url, lab.tokens[AUDITOR])
    _heading("10. The auditor reviews the log")
    log = auditor.audit()
    counts = log.groupby("event").size().rename("entries").reset_index()
    _print(counts)
    check = auditor.verify_audit()
    print(
        f"   chain verification: {'OK' if check['ok'] else 'FAILED'} ({check['entries']} entries)"
    )


def _show(frame: pd.DataFrame, head: int) -> None:
    prov = frame.attrs.get("provenance")
    if "n" in frame.columns:  # released cells first; suppressed ones show as NaN
        frame = frame.sort_values("n", ascending=False, na_position="last", kind="stable")
    _print(frame.head(head))
    if len(frame) > head:
        print(f"   … {len(frame) - head} more rows")
    if prov is not None:
        print(
            f"   job {prov.job_id[:8]} · {prov.recipe}@{prov.version} "
            f"(code {prov.code_sha256[:12]}) · nodes: {', '.join(prov.agencies)} · "
            f"{prov.suppressed_cells} cells suppressed (min cell {prov.min_cell})"
        )


def _print(frame: pd.DataFrame) -> None:
    with pd.option_context("display.width", 120, "display.max_columns", 12):
        text = frame.to_string(index=False)
    print("\n".join("   " + line for line in text.splitlines()))


def _heading(text: str) -> None:
    print(f"\n{text}", flush=True)


def _print_keep(lab: LocalLab) -> None:
    print("\nThe lab keeps running (Ctrl-C stops it).")
    print(f"   hub:      {lab.url}   (API docs: {lab.url}/docs)")
    for name, token in lab.tokens.items():
        print(f"   token {name:<28} {token}")
    print(
        "   in JupyterLab:  from datalab.client import Lab; "
        f"lab = Lab({lab.url!r}, {lab.tokens[ANALYST]!r})"
    )
