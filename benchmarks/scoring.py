"""Scoring speed on generated customers: raw LightGBM limits beside the Scorer, and end to end."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from features.schema import Tables
    from serving.scoring.scorer import Scorer
    from training.model import ModelBundle

REPO = Path(__file__).resolve().parent.parent
if not __package__:
    # Run as a script, this folder is sys.path[0], where benchmarks/features.py and
    # benchmarks/training.py would shadow the `features` and `training` packages.
    sys.path[0] = str(REPO)

AS_OF = pd.Timestamp("2026-11-01")  # the generator's default end: the day after the data
GOAL_RATIO = 1.5  # the scorer without reasons, at most this times raw predict
GOAL_END_TO_END = 180.0  # seconds for features + scores with reasons ...
GOAL_CUSTOMERS = 1_000_000  # ... of this many customers
THREADS = 2

USAGE = """
Run from the repository root (MLflow is not used; still, point it at a scratch store):

    MLFLOW_TRACKING_URI=sqlite:////tmp/bench-scoring/mlflow.db \\
        .venv/bin/python -m benchmarks.scoring [--customers 1000000] [--trials 4]

A bundle is trained once on `--train-customers` generated customers (seed 0, as of 2026-11-01;
`--bundle DIR` saves it there, or loads it if DIR already holds one). `--customers` others
(seed 1) are generated and their feature table built; on that same table, as rows per second:
(a) raw LightGBM predict of the churn and spend boosters on the prepared matrix, 2 threads,
the limit for scoring without reasons; (b) raw TreeSHAP (pred_contrib) of the churn booster on
the first `--contrib-sample` rows, extrapolated, the limit for reasons; (c) Scorer.score with
reasons="none"; (d) Scorer.score with the default reasons (customers with an action someone
reads); (e) end to end: build_features from the tables plus (d). (d) is timed inside (e): the
score call on the freshly built table. (a) and (c) are the best of `--repeat` runs. The
machine may be shared: compare the figures of one run, never runs of different days.
"""


@dataclass
class Row:
    """One line of the results table."""

    label: str
    seconds: float
    rows: int
    note: str = ""


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """The shortest wall time of `repeat` runs, and the last run's result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def trained_bundle(customers: int, trials: int, folder: Path | None) -> ModelBundle:
    """The bundle saved in `folder`, else one trained (and saved there when given)."""
    from features.synthetic import generate_tables
    from training.model import BUNDLE_FILE, ModelBundle
    from training.train import TrainOptions, train_models

    if folder is not None and (folder / BUNDLE_FILE).exists():
        print(f"bundle: loaded from {folder} (delete it to train again)")
        return ModelBundle.load(folder)
    started = time.perf_counter()
    tables = generate_tables(customers, seed=0)
    result = train_models(tables, AS_OF, TrainOptions(trials=trials))
    print(
        f"bundle: trained on {customers:,} customers, {trials} trials per model, "
        f"in {time.perf_counter() - started:.0f} s"
    )
    if folder is not None:
        result.bundle.save(folder)
        print(f"bundle: saved to {folder}")
    return result.bundle


def describe(bundle: ModelBundle) -> str:
    """Trees and leaves of each booster: what predict and TreeSHAP cost scales with."""
    boosters = {"churn": bundle.churn} | {
        f"spend {name}": booster for name, booster in bundle.spend.boosters.items()
    }
    parts = []
    for name, booster in boosters.items():
        trees = booster.dump_model()["tree_info"]
        leaves = np.mean([tree["num_leaves"] for tree in trees])
        parts.append(f"{name} {len(trees)} trees x {leaves:.0f} leaves")
    return f"{len(bundle.spec.columns)} features; " + ", ".join(parts)


def feature_table(customers: int, bundle: ModelBundle) -> tuple[Tables, pd.DataFrame]:
    """Generated tables (seed 1) and their feature table, with the time each took."""
    from features.build import build_features
    from features.synthetic import generate_tables

    started = time.perf_counter()
    tables = generate_tables(customers, seed=1)
    generated = time.perf_counter()
    features = build_features(tables, AS_OF, event_types=bundle.spec.event_types)
    built = time.perf_counter()
    rows = {name: len(getattr(tables, name)) for name in ("transactions", "events")}
    print(
        f"data: {customers:,} customers generated in {generated - started:.1f} s "
        f"({rows['transactions']:,} transactions, {rows['events']:,} events); "
        f"features {features.shape[0]:,} x {features.shape[1]} built in {built - generated:.1f} s"
    )
    return tables, features


def limits_and_scorer(
    bundle: ModelBundle, features: pd.DataFrame, scorer: Scorer, repeat: int, contrib_sample: int
) -> tuple[list[Row], float, float]:
    """(a), (b) and (c) on one feature table.

    Returns:
        Their rows (with the matrix preparation as context), the TreeSHAP rows per second of
        (b), and the seconds of (a).
    """
    n = len(features)
    started = time.perf_counter()
    matrix = bundle.spec.matrix(bundle.model_features(features))
    prepared = time.perf_counter() - started
    boosters = [bundle.churn, *bundle.spend.boosters.values()]
    raw, _ = best_of(
        repeat, lambda: [booster.predict(matrix, num_threads=THREADS) for booster in boosters]
    )
    sample = matrix.iloc[: min(contrib_sample, n)]
    contrib, _ = best_of(
        1, lambda: bundle.churn.predict(sample, num_threads=THREADS, pred_contrib=True)
    )
    contrib_rate = len(sample) / contrib
    plain, _ = best_of(repeat, lambda: scorer.score(features, AS_OF, reasons="none"))
    rows = [
        Row("prepare the matrix (spec.matrix)", prepared, n, "context: part of (c)"),
        Row("(a) raw predict, churn + spend", raw, n, f"{len(boosters)} boosters"),
        Row(
            "(b) raw TreeSHAP, churn",
            n / contrib_rate,
            n,
            f"{len(sample):,} rows in {contrib:.1f} s, extrapolated",
        ),
        Row("(c) Scorer.score, no reasons", plain, n, f"(c)/(a) = {plain / raw:.2f}"),
    ]
    return rows, contrib_rate, raw


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--train-customers", type=int, default=30_000)
    parser.add_argument("--trials", type=int, default=4, help="Optuna trials per model")
    parser.add_argument("--repeat", type=int, default=2, help="runs of (a) and (c); best kept")
    parser.add_argument("--contrib-sample", type=int, default=20_000, help="rows of (b)")
    parser.add_argument("--bundle", type=Path, default=None, help="load or save the bundle here")
    args = parser.parse_args()

    from features.build import build_features
    from serving.scoring.columns import NO_ACTION
    from serving.scoring.scorer import Scorer

    print(f"CPUs: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} at the start")
    bundle = trained_bundle(args.train_customers, args.trials, args.bundle)
    print(f"model: {describe(bundle)}")
    tables, features = feature_table(args.customers, bundle)
    n = len(features)
    scorer = Scorer(bundle, "bench")
    rows, contrib_rate, raw = limits_and_scorer(
        bundle, features, scorer, args.repeat, args.contrib_sample
    )
    plain = rows[-1].seconds
    del features

    started = time.perf_counter()
    fresh = build_features(tables, AS_OF, event_types=bundle.spec.event_types)
    built = time.perf_counter()
    scores = scorer.score(fresh, AS_OF)
    done = time.perf_counter()
    explained = int((scores["reasons"] != "").sum())
    with_action = int((scores["recommended_action"] != NO_ACTION).sum())
    end_to_end = done - started
    rows += [
        Row(
            "(d) Scorer.score, default reasons",
            done - built,
            n,
            f"{explained:,} with reasons; TreeSHAP alone >= {explained / contrib_rate:.0f} s",
        ),
        Row("(e) build_features + (d)", end_to_end, n, f"features {built - started:.1f} s"),
    ]

    print(f"\n{n:,} customers, LightGBM threads: {THREADS} (the scorer: all cores)")
    print(f"{'measurement':36} {'seconds':>9} {'rows/s':>10}  note")
    for row in rows:
        print(f"{row.label:36} {row.seconds:9.1f} {row.rows / row.seconds:10,.0f}  {row.note}")
    actions = scores["recommended_action"].value_counts()
    print(
        f"\nactions: {with_action:,} customers with one, {explained:,} of them with reasons; "
        + ", ".join(f"{name} {count:,}" for name, count in actions.items())
    )
    print(
        f"goal: scorer without reasons within {GOAL_RATIO}x of raw predict: "
        f"{plain / raw:.2f}x, {'met' if plain / raw <= GOAL_RATIO else 'NOT met'}"
    )
    verdict = "met" if end_to_end < GOAL_END_TO_END else "NOT met"
    if n != GOAL_CUSTOMERS:
        verdict = (
            f"not measured (the goal is for {GOAL_CUSTOMERS:,}; linearly "
            f"{end_to_end * GOAL_CUSTOMERS / n:.0f} s)"
        )
    print(
        f"goal: reasons for every customer with an action someone reads, {GOAL_CUSTOMERS:,} "
        f"end to end under {GOAL_END_TO_END:.0f} s: {end_to_end:.0f} s, {verdict}"
    )


if __name__ == "__main__":
    main()
