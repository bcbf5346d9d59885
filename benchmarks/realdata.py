"""`vafa backtest` on the public CDNOW log at several windows: the model against every baseline.

Usage: `.venv/bin/python benchmarks/realdata.py [--windows 90 120 180] [--trials 8] [--seed 42]
[--bootstrap 1000] [--out DIR]` (or `-m benchmarks.realdata` from the repository root)

CDNOW (23,570 customers, all first buying in Q1 1997, followed to 1998-06-30) is converted from
the `lifetimes` wheel as `benchmarks/cdnow.py` does (one order per customer and day) into a
temporary data folder. For each window W, `vafa backtest --as-of 1998-01-01 --churn-window-days W
--horizon-days W` runs in a subprocess (the code of this checkout, `--trials` per model: default 8,
a small budget, not vafa's own) against a temporary MLflow store, so the repository's `mlflow/`
is never written. Printed per window: on the active customers (bought within W days before T),
the model's and each baseline's value on every metric, the difference model minus baseline and
its paired bootstrap 95% interval (`--bootstrap` resamples of the customers), and a verdict per
metric; then a summary of where the model beats every baseline and where a baseline still wins,
by how much. `--out DIR` keeps each window's intervals (both populations) as `W.json`.

A window that fails (its error is printed) does not stop the others; the exit status is then 1.
Time: each window is one training run with the budget plus the grading, a few minutes per window
on the 2-core machine with the default 8 trials (longer while other work shares the cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

if not __package__:
    # Run as a script, this folder is sys.path[0], where benchmarks/features.py and training.py
    # would shadow the packages of those names: import from the repository root instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import pandas as pd

from benchmarks.cdnow import read_cdnow, source_path, to_transactions
from features.io import write_tables
from features.schema import Tables
from training.comparison import read_comparison, render, verdicts

REPO = Path(__file__).resolve().parent.parent
AS_OF = "1998-01-01"
WINDOWS = (90, 120, 180)
# Lines of a failed run's stderr shown in the report.
ERROR_LINES = 6


@dataclass(frozen=True)
class WindowRun:
    """One window's `vafa backtest`: its exit code, output and the intervals it wrote."""

    window: int
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    comparison: str | None  # the JSON of --out, None when the run wrote none


Runner = Callable[[Path, int, Path], WindowRun]


def convert(source: Path, folder: Path) -> pd.DataFrame:
    """Write CDNOW's rows as a Vafa data folder (one order per customer and day).

    Returns:
        The transactions written.
    """
    transactions = to_transactions(read_cdnow(source), "day")
    write_tables(Tables(transactions=transactions), folder, fmt="parquet")
    return transactions


def backtest_command(data: Path, window: int, out: Path, args: argparse.Namespace) -> list[str]:
    """The `vafa backtest` command line of one window (run with this interpreter)."""
    return [
        sys.executable,
        "-c",
        "from vafa.cli.app import run; run()",
        "backtest",
        "--data",
        str(data),
        "--as-of",
        AS_OF,
        "--churn-window-days",
        str(window),
        "--horizon-days",
        str(window),
        "--trials",
        str(args.trials),
        "--seed",
        str(args.seed),
        "--bootstrap",
        str(args.bootstrap),
        "--out",
        str(out),
    ]


def subprocess_runner(args: argparse.Namespace, store: Path) -> Runner:
    """Runs one window's backtest in a subprocess against the MLflow store in `store`."""
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}

    def run(data: Path, window: int, out: Path) -> WindowRun:
        command = backtest_command(data, window, out, args)
        print(f"\nrunning: vafa {' '.join(command[3:])}", flush=True)
        started = time.perf_counter()
        with subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as child:
            assert child.stderr is not None and child.stdout is not None
            log = []
            for line in child.stderr:  # its progress, echoed as it comes
                sys.stderr.write(line)
                log.append(line)
            stdout = child.stdout.read()
        seconds = time.perf_counter() - started
        written = out.read_text(encoding="utf-8") if out.is_file() else None
        return WindowRun(window, child.returncode, stdout, "".join(log), seconds, written)

    return run


def window_report(run: WindowRun) -> str:
    """One window's comparison on the active customers, or why there is none."""
    heading = f"=== {run.window}-day churn window and horizon, as of {AS_OF} ==="
    if run.returncode != 0 or run.comparison is None:
        return f"{heading}\nFAILED (exit {run.returncode}) after {run.seconds:.0f} s:\n" + (
            _error_tail(run.stderr) or "(no error output)"
        )
    intervals, context = read_comparison(run.comparison)
    resamples = int(str(context.get("resamples", 0)))
    return f"{heading} ({run.seconds:.0f} s)\n{render(intervals, resamples)}"


def _error_tail(stderr: str) -> str:
    """The last lines of a failed run's stderr: where its error is."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return "\n".join(f"  {line}" for line in lines[-ERROR_LINES:])


def summary(runs: Sequence[WindowRun]) -> str:
    """Where the model beats every baseline, where a baseline still wins and by how much."""
    rows, wins, failed = [], [], []
    for run in runs:
        if run.returncode != 0 or run.comparison is None:
            failed.append(f"{run.window} days (exit {run.returncode})")
            continue
        intervals, _ = read_comparison(run.comparison)
        judged = verdicts(intervals[intervals["population"] == "active"])
        rows.append(judged.assign(window=run.window))
        if (judged["verdict"] == "beats every baseline").all():
            wins.append(f"{run.window} days")
    lines = ["=== summary: active customers, model - baseline, paired bootstrap 95% intervals ==="]
    if rows:
        table = pd.concat(rows, ignore_index=True)
        for verdict, title in (
            ("beats every baseline", "the model beats every baseline"),
            ("ties", "no baseline is better, but the model does not beat them all"),
            ("loses", "a baseline still wins"),
            ("undefined", "undefined on these customers"),
        ):
            chosen = table[table["verdict"] == verdict]
            if chosen.empty:
                continue
            lines.append(f"{title}:")
            if verdict in ("loses", "ties"):
                lines += [
                    f"  {row.window} days, {row.target} {row.metric} {verdict} {row.detail}"
                    for row in chosen.itertuples()
                ]
                continue
            for (window, target), metrics in chosen.groupby(["window", "target"], sort=False):
                lines.append(f"  {window} days, {target}: {', '.join(metrics['metric'])}")
        lines.append("every metric at once: " + (", ".join(wins) if wins else "at no window"))
    lines.append("failed windows: " + (", ".join(failed) if failed else "none"))
    return "\n".join(lines)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--windows", type=int, nargs="+", default=list(WINDOWS), metavar="DAYS")
    parser.add_argument("--trials", type=int, default=8, help="Optuna trials per model (8)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples (1000)")
    parser.add_argument("--out", type=Path, default=None, help="keep each window's W.json here")
    args = parser.parse_args(argv)
    if min(args.windows) < 1 or args.trials < 1 or args.bootstrap < 1:
        parser.error("--windows, --trials and --bootstrap must be >= 1")
    return args


def main(argv: Sequence[str] | None = None, runner: Runner | None = None) -> int:
    """Convert, backtest every window, print each and the summary; 1 if a window failed."""
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="vafa-realdata-") as tmp:
        data, store, results = Path(tmp) / "data", Path(tmp) / "mlflow", Path(tmp) / "results"
        results.mkdir()
        source = source_path()
        transactions = convert(source, data)
        print(
            f"CDNOW from {source}: {len(transactions):,} rows, "
            f"{transactions['customer_id'].nunique():,} customers, "
            f"{transactions['ts'].min().date()} to {transactions['ts'].max().date()}; "
            f"as of {AS_OF}, windows {', '.join(map(str, args.windows))} days, "
            f"{args.trials} trials per model, seed {args.seed}, {args.bootstrap:,} resamples"
        )
        run_window = runner or subprocess_runner(args, store)
        runs = []
        for window in args.windows:  # a failed window is reported and the next one runs
            runs.append(run_window(data, window, results / f"{window}.json"))
            print(f"\n{window_report(runs[-1])}", flush=True)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            for written in results.glob("*.json"):
                shutil.copy2(written, args.out / written.name)
    print(f"\n{summary(runs)}")
    return 0 if all(run.returncode == 0 and run.comparison for run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
