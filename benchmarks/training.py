"""Wall time and peak memory of `vafa train` on generated data, beside its feature-building time.

Usage: `.venv/bin/python benchmarks/training.py [--customers 100000] [--trials N] [--seed 0]` (or
`-m benchmarks.training` from the repository root)

The data is generated in-process and written to a temporary folder; `vafa train` then runs in a
subprocess (the code of this checkout, default budget unless `--trials` is given) against a
temporary MLflow store, so the repository's `mlflow/` is never written. Figures printed:

- wall time and peak resident memory of the subprocess (`getrusage(RUSAGE_CHILDREN)`, which
  counts only children that have ended: here the one `vafa train`);
- the same run's own step timings as reference: loading (from its log) and feature building,
  churn and spend tuning+fitting (the `*_seconds` metrics it logs to MLflow), with row counts.

Timings depend on what else the machine runs; compare figures from the same run, not across runs.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if not __package__:
    # Run as a script, this folder is sys.path[0], where this module and benchmarks/features.py
    # would shadow the `training` and `features` packages: import from the repository root.
    sys.path[0] = str(REPO)
LOADED = re.compile(r"loading \S+ done in ([\d.]+) s")
STEP_METRICS = ("features_seconds", "churn_seconds", "spend_seconds")
ROW_METRICS = ("rows_churn_train", "rows_churn_valid", "rows_spend_train", "rows_spend_valid")


def generate(customers: int, seed: int, folder: Path) -> tuple[float, dict[str, int]]:
    """Write generated tables to `folder`; returns the seconds taken and the rows per table."""
    from features.io import write_tables
    from features.synthetic import generate_tables

    started = time.perf_counter()
    tables = generate_tables(customers, seed=seed)
    write_tables(tables, folder, fmt="parquet")
    rows = {
        name: len(frame)
        for name in ("transactions", "customers", "events")
        if (frame := getattr(tables, name)) is not None
    }
    return time.perf_counter() - started, rows


def run_train(data: Path, store: Path, trials: int | None) -> tuple[float, int, str, str]:
    """Run `vafa train` in a subprocess, echoing its log.

    Returns:
        Wall seconds, peak RSS in KiB, its stdout and its stderr.
    """
    command = [
        sys.executable,
        "-c",
        "from vafa.cli.app import run; run()",
        "train",
        "--data",
        str(data),
    ]
    if trials is not None:
        command += ["--trials", str(trials)]
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}
    print(
        "running:",
        " ".join(command[3:]),
        f"in {REPO}",
        f"(MLFLOW_TRACKING_URI={env['MLFLOW_TRACKING_URI']})",
    )
    started = time.perf_counter()
    with subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        assert child.stderr is not None and child.stdout is not None
        log = []
        for line in child.stderr:
            sys.stderr.write(line)
            log.append(line)
        out = child.stdout.read()
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"vafa train failed with exit code {child.returncode}:\n{out}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return wall, peak_kib, out, "".join(log)


def logged_metrics(store: Path) -> dict[str, float]:
    """The metrics of the one run in the temporary store."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    return dict(runs[0].data.metrics) if runs else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=None, help="default: vafa's own budget")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vafa-bench-") as tmp:
        data, store = Path(tmp) / "data", Path(tmp) / "mlflow"
        seconds, rows = generate(args.customers, args.seed, data)
        size = sum(p.stat().st_size for p in data.iterdir()) / 2**20
        print(
            f"generated {args.customers:,} customers (seed {args.seed}) in {seconds:.1f} s: "
            + ", ".join(f"{name} {n:,}" for name, n in rows.items())
            + f" rows, {size:.0f} MiB of Parquet"
        )
        wall, peak_kib, out, log = run_train(data, store, args.trials)
        metrics = logged_metrics(store)

    print(out.rstrip())
    budget = f"{args.trials} trials per model" if args.trials else "default budget"
    print(f"\nvafa train ({budget}), {args.customers:,} customers, CPUs: {os.cpu_count()}")
    print(f"  wall time        {wall:8.1f} s")
    print(f"  peak memory      {peak_kib / 2**20:8.2f} GiB (max RSS of the subprocess)")
    print("reference, the same run's steps:")
    loaded = LOADED.search(log)
    if loaded:
        print(f"  loading          {float(loaded.group(1)):8.1f} s (from its log)")
    for name in STEP_METRICS:
        if name in metrics:
            print(f"  {name.removesuffix('_seconds'):16} {metrics[name]:8.1f} s")
    counted = {name: int(metrics[name]) for name in ROW_METRICS if name in metrics}
    if counted:
        print(
            "  rows: " + ", ".join(f"{k.removeprefix('rows_')} {v:,}" for k, v in counted.items())
        )
    accounted = sum(metrics.get(name, 0.0) for name in STEP_METRICS)
    print(
        f"  the rest (start-up, imports, MLflow logging and registration): "
        f"{wall - accounted - (float(loaded.group(1)) if loaded else 0.0):.1f} s"
    )


if __name__ == "__main__":
    main()
