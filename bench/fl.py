"""Federated training benchmark: the lab's Flower deployment vs the same code on pooled data.

All in one run, on one synthetic city:

(a) federated   ``fl_logistic`` through the whole lab: analyst -> hub -> SuperLink -> one
                SuperNode per district (each behind its approval gate) -> SecAgg+ rounds ->
                model released to the analyst; wall time per secure round;
(b) central     the same model code (the app's ``model.py``: the same transform, the same
                Newton steps, as many as the federated rounds) on all districts' rows pooled in
                one process — the baseline a data lake would give, and its compute time;
(c) engine      what a round costs besides computing: the last secure round takes no training
                step (it only evaluates), so its wall time is SecAgg+ and Flower's deployment
                engine alone; the local compute per node is timed directly.

Both models are scored on the same pooled rows (the benchmark plays every district; no analyst
could). ``yield_lift`` is the seed's measure: the confirmed share among the top half of flags
ranked by the federated model, divided by the confirmed share among all flags.

    python bench/fl.py            # 200,000 people, 3 rounds
    python bench/fl.py --quick    # 50,000 people (4 districts), 2 rounds

The last line printed is JSON: {"bench": "fl", "rounds", "fl_accuracy", "central_accuracy",
"gap_pts", "seconds_per_round", "yield_lift"}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datalab.client import Lab
from datalab.federated_model import app_model
from datalab_cli.local_lab import ANALYST, LocalLab
from recipes.fl_logistic import FEATURES
from synthetic_city import SynthConfig, synthesize


def pooled(city: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each district's design matrix and labels, as its ClientApp builds them."""
    model = app_model()
    xs, ys = [], []
    for folder in sorted(city.glob("district_*")):
        table = pq.read_table(folder / "verification_outcomes.parquet")
        xs.append(model.design_of(table, FEATURES))
        ys.append(table["confirmed"].to_numpy().astype(float))
    return xs, ys


def yield_lift(scores: np.ndarray, confirmed: np.ndarray) -> float:
    top = np.argsort(-scores, kind="stable")[: len(scores) // 2]
    return float(confirmed[top].mean() / confirmed.mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 people, 2 rounds")
    parser.add_argument("--people", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    people = args.people or (50_000 if args.quick else 200_000)
    rounds = args.rounds or (2 if args.quick else 3)
    model = app_model()

    work = Path(tempfile.mkdtemp(prefix="bench-fl-"))
    try:
        city = work / "city"
        synthesize(SynthConfig(people=people, seed=args.seed), city)
        districts = sorted(p.name for p in city.glob("district_*"))
        xs, ys = pooled(city)
        x, y = np.vstack(xs), np.concatenate(ys)
        print(
            f"city: {people:,} people, {len(districts)} districts, {len(y):,} flags "
            f"({y.mean():.1%} confirmed)",
            file=sys.stderr,
        )

        # (b) central: the same code on pooled rows
        started = time.perf_counter()
        w = np.zeros(x.shape[1])
        for _ in range(rounds):
            w = model.local_update(w, x, y, "logistic", steps=1, ridge=0.001)
        central_s = time.perf_counter() - started
        central_accuracy, _ = model.metrics(w, x, y, "logistic")

        # (c) local compute of the largest district, one round
        largest = max(range(len(xs)), key=lambda i: len(ys[i]))
        started = time.perf_counter()
        model.local_update(np.zeros(x.shape[1]), xs[largest], ys[largest], "logistic", 1, 0.001)
        model.metrics(np.zeros(x.shape[1]), xs[largest], ys[largest], "logistic")
        local_compute_s = time.perf_counter() - started

        # (a) federated through the lab
        lab = LocalLab(
            city_dir=city,
            state_dir=work / "lab",
            agencies=districts,
            flower=True,
            flower_round_timeout_s=120.0,
        )
        started = time.perf_counter()
        lab.start()
        start_s = time.perf_counter() - started
        try:
            with Lab(lab.url, lab.tokens[ANALYST]) as analyst:
                started = time.perf_counter()
                fl = analyst.train("fl_logistic", rounds=rounds, progress=False, timeout=3600)
                fl_s = time.perf_counter() - started
        finally:
            lab.stop()
        scores = model.predict(fl.weights, x, "logistic")
        fl_accuracy, _ = model.metrics(fl.weights, x, y, "logistic")
        marks = [0.0, *(r.seconds for r in fl.rounds)]
        durations = np.diff(marks)
        training = durations[:-1]  # the last round only evaluates
        engine_s = float(durations[-1])
        per_round = float(training.mean())

        print(
            f"lab start (hub + SuperLink + {len(districts)} nodes/SuperNodes): {start_s:.1f} s",
            file=sys.stderr,
        )
        print(
            f"federated: {fl_s:.1f} s for {rounds} rounds + 1 evaluation round "
            f"({', '.join(f'{d:.1f}' for d in durations)} s)",
            file=sys.stderr,
        )
        print(
            f"central (same code, pooled): {central_s * 1000:.1f} ms; "
            f"federated / central time: {fl_s / central_s:,.0f}x",
            file=sys.stderr,
        )
        print(
            f"per training round: {per_round:.1f} s, of which local compute "
            f"{local_compute_s * 1000:.1f} ms on the largest district; an evaluation-only "
            f"round (SecAgg+ and Flower's engine, no training) took {engine_s:.1f} s = "
            f"{engine_s / per_round:.0%} of a training round",
            file=sys.stderr,
        )
        print(
            f"accuracy: federated {fl_accuracy:.4f}, central {central_accuracy:.4f}; "
            f"yield lift (top half by the federated model): "
            f"{yield_lift(scores, y):.3f}; by the central model: "
            f"{yield_lift(model.predict(w, x, 'logistic'), y):.3f}",
            file=sys.stderr,
        )
        print(
            json.dumps(
                {
                    "bench": "fl",
                    "rounds": rounds,
                    "fl_accuracy": round(fl_accuracy, 4),
                    "central_accuracy": round(central_accuracy, 4),
                    "gap_pts": round((central_accuracy - fl_accuracy) * 100, 2),
                    "seconds_per_round": round(per_round, 2),
                    "yield_lift": round(yield_lift(scores, y), 3),
                }
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
