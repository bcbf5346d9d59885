"""Wall time and peak memory of `vafa train` at 100k and 1M customers, against plain LightGBM fits.

Usage: `.venv/bin/python -m benchmarks.training [--customers 100000 1000000] [--trials N]
[--seed 0]` from the repository root (or `.venv/bin/python benchmarks/training.py ...`).

For each size the data is generated in-process and written to a temporary folder; `vafa
train` then runs in a subprocess (the code of this checkout, default budget unless `--trials`
is given) against a temporary MLflow store, so the repository's `mlflow/` is never written.
Figures printed, per size:

- wall time and peak resident memory of that `vafa train` process (`os.wait4`'s rusage of
  the one child);
- the same run's own step timings: loading (from its log) and feature building, churn and
  spend tuning+fitting (the `*_seconds` metrics it logs to MLflow), with row counts;
- per Optuna study of the run (read back from the run's study storage): its trials, its
  tuning time, and one plain LightGBM fit of its final parameters on the same matrices in
  the same run: binning the rows (`bin_seconds`) plus the best trial's early-stopped fit
  (`fit_seconds`), which is exactly that fit; then the ratio of the whole run and of the
  tuning to those plain fits: what the search and the pipeline cost over fitting once.

Timings depend on what else the machine runs; compare figures from the same run, not across runs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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
        Wall seconds, peak RSS of that process in KiB, its stdout and its stderr.
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
    child = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stderr is not None and child.stdout is not None
    log = []
    for line in child.stderr:
        sys.stderr.write(line)
        log.append(line)
    out = child.stdout.read()
    # This child's own rusage: RUSAGE_CHILDREN would keep the largest of every size run.
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"vafa train failed with exit code {child.returncode}:\n{out}")
    return wall, usage.ru_maxrss, out, "".join(log)  # ru_maxrss: KiB on Linux


def logged_metrics(store: Path) -> dict[str, float]:
    """The metrics of the one run in the temporary store."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    return dict(runs[0].data.metrics) if runs else {}


@dataclass(frozen=True)
class StudyCost:
    """One Optuna study of the run: its trials, its time, and one plain fit of its result."""

    name: str
    trials: int
    pruned: int
    tuning_seconds: float  # binning plus every trial
    plain_fit_seconds: float  # binning plus the best trial's fit
    rounds: int  # boosting rounds of the best trial (early-stopped)


def study_costs(store: Path) -> list[StudyCost]:
    """Every study of the run, read back from the Optuna storage beside its MLflow store."""
    import optuna

    from training.registry import optuna_storage

    storage = optuna_storage(f"sqlite:///{store / 'mlflow.db'}")
    if storage is None or not (store / "optuna.db").exists():
        return []
    costs = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        binned = float(study.user_attrs.get("bin_seconds", float("nan")))
        trials = study.trials
        spent = sum(
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in trials
            if t.datetime_complete is not None and t.datetime_start is not None
        )
        best = float(study.best_trial.user_attrs.get("fit_seconds", float("nan")))
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
        rounds = int(study.best_trial.user_attrs.get("best_iteration", 0))
        costs.append(
            StudyCost(
                summary.study_name, len(trials), pruned, binned + spent, binned + best, rounds
            )
        )
    return costs


def report(
    customers: int,
    trials: int | None,
    wall: float,
    peak_kib: int,
    log: str,
    out: str,
    metrics: dict[str, float],
    costs: list[StudyCost],
) -> None:
    """Print one size's figures."""
    print(out.rstrip())
    budget = f"{trials} trials per model" if trials else "default budget"
    print(f"\nvafa train ({budget}), {customers:,} customers, CPUs: {os.cpu_count()}")
    print(f"  wall time        {wall:8.1f} s")
    print(f"  peak memory      {peak_kib / 2**20:8.2f} GiB (max RSS of the vafa train process)")
    print("the same run's steps:")
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
    if not costs:
        print("no Optuna study found in the run's storage: no plain-fit reference")
        return
    print("against plain LightGBM fits of the final parameters on the same matrices (same run):")
    for cost in costs:
        print(
            f"  {cost.name.rsplit('-', 1)[-1]:8} {cost.trials} trials ({cost.pruned} pruned): "
            f"tuning {cost.tuning_seconds:7.1f} s, one plain fit {cost.plain_fit_seconds:6.1f} s"
            f" ({cost.rounds} rounds), x{cost.tuning_seconds / cost.plain_fit_seconds:.1f}"
        )
    plain = sum(c.plain_fit_seconds for c in costs)
    tuning = sum(c.tuning_seconds for c in costs)
    print(f"  plain fits, all models  {plain:8.1f} s")
    print(f"  tuning / plain fits     {tuning / plain:8.1f} x")
    print(f"  vafa train / plain fits {wall / plain:8.1f} x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--trials", type=int, default=None, help="default: vafa's own budget")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    for customers in args.customers:
        with tempfile.TemporaryDirectory(prefix="vafa-bench-") as tmp:
            data, store = Path(tmp) / "data", Path(tmp) / "mlflow"
            seconds, rows = generate(customers, args.seed, data)
            size = sum(p.stat().st_size for p in data.iterdir()) / 2**20
            print(
                f"generated {customers:,} customers (seed {args.seed}) in {seconds:.1f} s: "
                + ", ".join(f"{name} {n:,}" for name, n in rows.items())
                + f" rows, {size:.0f} MiB of Parquet"
            )
            wall, peak_kib, out, log = run_train(data, store, args.trials)
            metrics = logged_metrics(store)
            costs = study_costs(store)
        report(customers, args.trials, wall, peak_kib, log, out, metrics, costs)


if __name__ == "__main__":
    main()
