"""Wall time, peak memory and throughput of `vafa score` end to end, at several sizes.

Usage: `.venv/bin/python benchmarks/batch.py [--sizes 250000 500000 1000000] [--keep DIR]` (or
`-m benchmarks.batch` from the repository root)

A champion is trained once in-process on `--train-customers` generated customers (seed 0,
`--trials` per model; default 30k and 4, sized like the scoring benchmark's) into a temporary
MLflow store, so the repository's `mlflow/` is never touched.
For each size, `vafa generate` writes a data folder (seed 1, outside the timing), then the real
command, `vafa score --data DIR --out DIR`, runs in a subprocess against a temporary scores
store (SQLite) and the same MLflow store. Figures per size: wall time, peak resident memory of
that process (`os.wait4`'s rusage: the process's own high-water mark, not a sampled guess),
its CPU time (user + system: less sensitive than wall time to other work on a shared machine),
customers per second, and the run's own step timings (from its summary.json); then the ratios
between consecutive sizes: time and memory per customer stay flat when cost is linear.

Goal on the 2-core machine: 1 million customers in under 3 minutes and 8 GB. Timings depend on
what else the machine runs; compare figures of one run, not across runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if not __package__:
    # Run as a script, this folder is sys.path[0], where benchmarks/features.py and
    # benchmarks/training.py would shadow the `features` and `training` packages.
    sys.path[0] = str(REPO)

VAFA = str(Path(sys.executable).with_name("vafa"))
AS_OF = "2026-11-01"  # the generator's default end: the day after the data
GOAL_SECONDS = 180.0
GOAL_GB = 8.0
GOAL_CUSTOMERS = 1_000_000


@dataclass
class Measured:
    """One size's figures."""

    customers: int
    scored: int
    seconds: float
    cpu_seconds: float
    peak_gb: float
    steps: dict[str, float]

    @property
    def per_second(self) -> float:
        """Customers per second of wall time."""
        return self.customers / self.seconds


def train_champion(customers: int, trials: int, env: dict[str, str]) -> str:
    """Train and register a champion in the temporary MLflow store; returns its version.

    The model's size (trees, depth) sets the cost of reasons, so the default is sized like a
    real one (30k customers, 4 trials), not a toy.
    """
    os.environ.update(env)
    import pandas as pd

    from features.synthetic import generate_tables
    from training.datasets import data_fingerprint
    from training.registry import configure_tracking, log_training_run
    from training.train import TrainOptions, train_models

    started = time.perf_counter()
    configure_tracking(env["MLFLOW_TRACKING_URI"])
    tables = generate_tables(customers, seed=0)
    options = TrainOptions(trials=trials)
    result = train_models(tables, pd.Timestamp(AS_OF), options)
    registered = log_training_run(
        result, options, fingerprint=data_fingerprint(tables), data_dir="generated", plots={}
    )
    print(
        f"champion: version {registered.version}, trained on {customers:,} customers in "
        f"{time.perf_counter() - started:.0f} s, {trials} trials per model; churn "
        f"{result.bundle.churn.num_trees()} trees ({registered.decision})"
    )
    return registered.version


def generate(customers: int, folder: Path, env: dict[str, str]) -> None:
    """`vafa generate` in a subprocess, so its memory is gone before the measured run."""
    started = time.perf_counter()
    subprocess.run(
        [
            VAFA,
            "-q",
            "generate",
            "--customers",
            str(customers),
            "--out",
            str(folder),
            "--seed",
            "1",
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    print(f"data: {customers:,} customers generated in {time.perf_counter() - started:.0f} s")


def score(customers: int, data: Path, out: Path, log: Path, env: dict[str, str]) -> Measured:
    """Run `vafa score` and measure it; its log goes to `log` (and the last lines to stdout)."""
    command = [VAFA, "score", "--data", str(data), "--out", str(out), "--as-of", AS_OF]
    with log.open("w") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=stderr, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if process.returncode not in (0, 4, 5):
        raise SystemExit(f"vafa score failed (exit {process.returncode}):\n{text[-3000:]}")
    summary = json.loads((out / f"as_of={AS_OF}" / "summary.json").read_text())
    drift = summary["drift"]
    print(
        f"  exit {process.returncode}; drift flagged: {drift.get('flagged') or 'none'} "
        f"(max PSI {drift.get('max_psi', float('nan')):.3f}); "
        f"stale flags: {summary['freshness']['flags'] or 'none'}"
    )
    return Measured(
        customers=customers,
        scored=int(summary["customers"]),
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_gb=usage.ru_maxrss / 1024**2,  # KiB on Linux
        steps=summary["timings_seconds"],
    )


def report(rows: list[Measured]) -> None:
    """The table of sizes, then the ratios between consecutive sizes."""
    print(
        f"\n{'customers':>10} {'scored':>10} {'wall s':>8} {'CPU s':>8} {'peak GB':>8} "
        f"{'cust/s':>9}  steps (s)"
    )
    for r in rows:
        steps = ", ".join(f"{k.removesuffix('_seconds')} {v:.1f}" for k, v in r.steps.items())
        print(
            f"{r.customers:>10,} {r.scored:>10,} {r.seconds:>8.1f} {r.cpu_seconds:>8.1f} "
            f"{r.peak_gb:>8.2f} "
            f"{r.per_second:>9,.0f}  {steps}"
        )
    for small, large in itertools.pairwise(rows):
        size = large.customers / small.customers
        time_ratio = large.seconds / small.seconds
        memory_ratio = large.peak_gb / small.peak_gb
        print(
            f"{small.customers:,} -> {large.customers:,} customers (x{size:.1f}): time "
            f"x{time_ratio:.2f}, peak memory x{memory_ratio:.2f}; time per customer "
            f"x{time_ratio / size:.2f} (1.00 = linear), CPU time per customer "
            f"x{large.cpu_seconds / small.cpu_seconds / size:.2f}"
        )
    goal = next((r for r in rows if r.customers == GOAL_CUSTOMERS), None)
    if goal is not None:
        ok = goal.seconds < GOAL_SECONDS and goal.peak_gb < GOAL_GB
        print(
            f"goal (1M in < {GOAL_SECONDS:.0f} s and < {GOAL_GB:.0f} GB): "
            f"{goal.seconds:.0f} s, {goal.peak_gb:.1f} GB -> {'met' if ok else 'NOT met'}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[250_000, 500_000, 1_000_000], help="Customers."
    )
    parser.add_argument("--train-customers", type=int, default=30_000)
    parser.add_argument("--trials", type=int, default=4, help="Optuna trials per model")
    parser.add_argument("--keep", type=Path, help="Keep data, scores and logs in this folder.")
    args = parser.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
    }
    try:
        train_champion(args.train_customers, args.trials, env)
        rows = []
        for size in args.sizes:
            data = root / f"data-{size}"
            if not (data / "transactions.parquet").exists():
                generate(size, data, env)
            print(f"vafa score: {size:,} customers ...", flush=True)
            # A store per size: each run inserts, none updates another size's rows.
            run_env = env | {"VAFA_STORE_URL": f"sqlite:///{root / f'scores-{size}.db'}"}
            out, log = root / f"scores-{size}", root / f"score-{size}.log"
            rows.append(score(size, data, out, log, run_env))
            print(f"  {rows[-1].seconds:.1f} s, peak {rows[-1].peak_gb:.2f} GB", flush=True)
            if args.keep is None:
                shutil.rmtree(data)
        report(rows)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
