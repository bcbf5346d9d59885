"""The Spark engine beside the local engine on the same generated data folder, in one run."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
if not __package__:
    # Run as a script, this folder is sys.path[0], where benchmarks/features.py and
    # benchmarks/training.py would shadow the `features` and `training` packages.
    sys.path[0] = str(REPO)

AS_OF = pd.Timestamp("2026-11-01")  # the generator's default end: the day after the data

USAGE = """
Run from the repository root (MLflow is not used):

    .venv/bin/python -m benchmarks.spark [--customers 20000] [--buckets 8] [--master local[2]]

A bundle is trained on `--train-customers` generated customers (seed 0, as of 2026-08-01);
`--customers` others (seed 1) are written as a Parquet data folder. Timed on that folder, as of
2026-11-01: (a) the local engine: load_tables + build_features + Scorer.score (2 LightGBM
threads); (b) the Spark engine, whose session is started first (its start-up is reported on
its own): score_with_spark from the folder, written as Parquet (all of the job), and again
warm (Python workers and the bundle already loaded). Both outputs are compared row for row.
"""


def main() -> None:
    """Time both engines and print the figures."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    from features.build import build_features
    from features.io import load_tables, write_tables
    from features.synthetic import generate_tables
    from serving.batch.spark import collect_scores, score_with_spark, spark_session
    from serving.scoring.scorer import Scorer
    from training.train import TrainOptions, train_models

    parser = argparse.ArgumentParser(
        description=USAGE, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--train-customers", type=int, default=3_000)
    parser.add_argument("--buckets", type=int, default=None)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    options = TrainOptions(trials=1, n_snapshots=2, spacing_days=45, num_threads=2)
    bundle = train_models(
        generate_tables(args.train_customers, seed=0), pd.Timestamp("2026-08-01"), options
    ).bundle
    work = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    data = work / "data"
    write_tables(generate_tables(args.customers, seed=1), data)

    tick = time.perf_counter()
    tables = load_tables(data).tables
    load_s = time.perf_counter() - tick
    features = build_features(tables, AS_OF, event_types=bundle.spec.event_types)
    local = Scorer(bundle, "bench", num_threads=2).score(features, AS_OF)
    local_s = time.perf_counter() - tick
    rows = sum(
        len(f) for f in (tables.transactions, tables.events, tables.customers) if f is not None
    )
    del tables, features

    tick = time.perf_counter()
    spark = spark_session("vafa-bench", args.master, shuffle_partitions=4)
    start_s = time.perf_counter() - tick
    timings = []
    for run in range(2):
        tick = time.perf_counter()
        frame = score_with_spark(spark, data, AS_OF, bundle, "bench", buckets=args.buckets)
        frame.write.mode("overwrite").parquet(str(work / f"scores-{run}.parquet"))
        timings.append(time.perf_counter() - tick)
    got = collect_scores(spark.read.parquet(str(work / "scores-1.parquet")))
    spark.stop()

    ids = got["customer_id"].to_numpy()
    same = len(got) == len(local) and bool((ids == local["customer_id"].to_numpy()).all())
    gap = (got["churn_probability"] - local["churn_probability"]).abs().max() if same else None
    close = gap is not None and gap < 1e-9
    print(f"data: {args.customers:,} customers, {rows:,} input rows, {len(local):,} scored, {work}")
    print(f"  local engine, load + features + scores: {local_s:6.1f} s (load {load_s:.1f} s)")
    print(f"  spark session start (JVM):              {start_s:6.1f} s")
    print(f"  spark engine, first run (cold workers): {timings[0]:6.1f} s")
    print(f"  spark engine, second run (warm):        {timings[1]:6.1f} s")
    print(f"  same customers and churn scores:        {bool(close)}")
    print(f"  master {args.master}, buckets {args.buckets or 'default'}, pid {os.getpid()}")


if __name__ == "__main__":
    main()
