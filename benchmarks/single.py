"""One customer in process: where the milliseconds of an online `/score` go, stage by stage."""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from training.model import ModelBundle

REPO = Path(__file__).resolve().parent.parent
if not __package__:
    # Run as a script, this folder is sys.path[0], where benchmarks/features.py and
    # benchmarks/training.py would shadow the `features` and `training` packages.
    sys.path[0] = str(REPO)

from features.schema import ID  # noqa: E402
from serving.scoring.columns import VALUE_COLUMNS  # noqa: E402

AS_OF = pd.Timestamp("2026-11-01")
# The scorer's columns before segments and actions are added.
SCORE_COLUMNS = (ID, "as_of", *VALUE_COLUMNS, "expected_next_order")

USAGE = """
Run from the repository root:

    .venv/bin/python -m benchmarks.single [--bundle DIR] [--customers 64] [--rounds 5]

The bundle is loaded from `--bundle DIR` when it holds one, else trained on `--train-customers`
generated customers (seed 0, one trial; saved to DIR when given). `--customers` request bodies
are generated as `benchmarks.serving` sends them (50 transactions, 100 events and a profile
each) and turned into tables as the service does (`serving.online.requests.request_tables`).
Each stage then runs once per customer, `--rounds` times over all of them, after one warm-up round:

  features         feature_columns (build_features as a dict of arrays) on one customer's tables
  model input      what the boosters read (ModelBundle.model_input)
  predict          churn and spend predictions (calibrated) from that input
  segments+policy  the scorer's segments, lifecycle and recommended action
  Scorer.score_columns  all of scoring from the feature row, reasons as the service asks
  score_customers  the service's in-process path from validated customers (features + score)
  raw predict      LightGBM alone, one float64 row, churn booster: the floor

and the same for `--batch` customers per call. Objects alive after loading are frozen out of
the garbage collector as the service does. `--profile` prints the top of a cProfile of the
score_customers stage. The machine may be shared: compare figures of one run (load average
printed), or runs close in time.
"""


def trained_bundle(customers: int, folder: Path | None) -> ModelBundle:
    """The bundle saved in `folder`, else one trained small (and saved there when given)."""
    from features.synthetic import generate_tables
    from training.model import BUNDLE_FILE, ModelBundle
    from training.train import TrainOptions, train_models

    if folder is not None and (folder / BUNDLE_FILE).exists():
        print(f"bundle: loaded from {folder}")
        return ModelBundle.load(folder)
    started = time.perf_counter()
    options = TrainOptions(trials=1, seed=0, n_snapshots=3, spacing_days=45)
    bundle = train_models(generate_tables(customers, seed=0), AS_OF, options).bundle
    print(f"bundle: trained on {customers:,} customers in {time.perf_counter() - started:.0f} s")
    if folder is not None:
        bundle.save(folder)
        print(f"bundle: saved to {folder}")
    return bundle


def timings(rounds: int, inputs: list[Any], run: Callable[[Any], object]) -> np.ndarray:
    """Milliseconds of `run` on each input, `rounds` times over them, after one warm-up round."""
    for item in inputs:
        run(item)
    out = []
    for _ in range(rounds):
        for item in inputs:
            started = time.perf_counter()
            run(item)
            out.append((time.perf_counter() - started) * 1e3)
    return np.array(out)


def as_floats(matrix: pd.DataFrame) -> np.ndarray:
    """The matrix as LightGBM sees it: categoricals as their codes (NaN when null)."""
    columns = [
        matrix[c].cat.codes.replace(-1, np.nan)
        if isinstance(matrix[c].dtype, pd.CategoricalDtype)
        else matrix[c]
        for c in matrix.columns
    ]
    return np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])


def line(label: str, ms: np.ndarray) -> str:
    p50, p95 = np.percentile(ms, [50, 95])
    return f"{label:<34} {p50:>8.2f} {p95:>8.2f} {ms.min():>8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, default=None, help="load or save the bundle here")
    parser.add_argument("--train-customers", type=int, default=1500)
    parser.add_argument("--customers", type=int, default=64, help="distinct request bodies")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100, help="customers per batch call")
    parser.add_argument("--profile", action="store_true", help="cProfile score_customers")
    args = parser.parse_args()

    from benchmarks.serving import customer
    from features.build import feature_columns
    from serving.online.champion import Champion, settle_memory
    from serving.online.requests import request_tables, score_customers
    from serving.online.schema import CustomerHistory
    from serving.scoring.scorer import Scorer
    from vafa.settings import quiet_telemetry

    quiet_telemetry()
    bundle = trained_bundle(args.train_customers, args.bundle)
    scorer = Scorer(bundle, "bench", num_threads=1)  # as the service holds it
    champion = Champion(scorer, "bench", pd.Timestamp.now().to_pydatetime())
    rng = np.random.default_rng(7)
    bodies = [customer(rng, i) for i in range(max(args.customers, args.batch))]
    histories = [CustomerHistory.model_validate(body) for body in bodies]
    event_types = bundle.spec.event_types or None
    settle_memory()

    def one(h: list[CustomerHistory]) -> Any:
        return request_tables(h, [f"{i:05d}" for i in range(len(h))])

    singles = [[h] for h in histories[: args.customers]]
    batches = [histories[: args.batch]]
    print(
        f"CPUs: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; "
        f"{len(bundle.spec.columns)} model features; {len(singles)} customers x {args.rounds} "
        f"rounds, and {args.rounds} x {args.batch} customers per batch call"
    )
    print(f"\n{'stage (ms per call)':<34} {'p50':>8} {'p95':>8} {'min':>8}")
    for label, groups in (("one customer", singles), (f"batch of {args.batch}", batches)):
        tables = [one(g) for g in groups]
        # What `/score` scores: the features as a dict of columns (`feature_columns`).
        feats = [feature_columns(t, AS_OF, event_types=event_types) for t in tables]
        sizes = [len(f["customer_id"]) for f in feats]
        inputs = [bundle.model_input(f, n) for f, n in zip(feats, sizes, strict=True)]
        rounds = args.rounds if len(groups) > 1 else args.rounds * 4
        # What the scorer segments: its score columns before segments and actions.
        pairs = list(zip(feats, sizes, strict=True))
        scored = [scorer.score_columns(f, n, AS_OF, "none") for f, n in pairs]
        scores = [{c: s[c] for c in SCORE_COLUMNS} for s in scored]
        print(f"-- {label}")
        stages: list[tuple[str, list[Any], Callable[[Any], object]]] = [
            ("features", tables, lambda t: feature_columns(t, AS_OF, event_types=event_types)),
            ("model input", feats, lambda f: bundle.model_input(f, len(f["customer_id"]))),
            (
                "predict (churn + spend)",
                inputs,
                lambda m: (
                    bundle.churn_calibrator(bundle.churn_raw(m, 1)),
                    bundle.spend.predict(m, 1),
                ),
            ),
            (
                "segments+policy",
                list(zip(feats, scores, strict=True)),
                lambda fs: scorer._segment_and_act(fs[0], fs[1], len(fs[0]["customer_id"])),
            ),
            (
                "Scorer.score_columns",
                feats,
                lambda f: scorer.score_columns(f, len(f["customer_id"]), AS_OF),
            ),
            ("score_customers", groups, lambda g: score_customers(champion, g, AS_OF)),
        ]
        for name, inputs, run in stages:
            print(line(name, timings(rounds, inputs, run)))
        floats = [
            as_floats(bundle.spec.matrix(pd.DataFrame(bundle.model_features(f)))) for f in feats
        ]
        raw = timings(rounds, floats, lambda m: bundle.churn.predict(m, num_threads=1))
        print(line("raw predict, churn (float64 rows)", raw))

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.rounds):
            for g in singles:
                score_customers(champion, g, AS_OF)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
