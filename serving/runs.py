"""The one catalog of published scoring runs: where a run lives, finding runs, publishing one.

A run is a folder `OUT/as_of=YYYY-MM-DD/` holding `scores.parquet` (and CSV twins, the changed
actions and `summary.json`). It is written into a staging folder and swapped in whole, one run
at a time per output folder, so readers (the dashboard, campaigns, the next night's
comparison) only ever see complete runs.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.schema import to_timestamp
from serving.scoring.columns import NO_ACTION, VALUE_COLUMNS

log = logging.getLogger(__name__)

RUN_PREFIX = "as_of="
SCORES_FILE = "scores.parquet"
SUMMARY_FILE = "summary.json"
CHANGES_FILES = ("changed_actions.parquet", "changes.parquet")
SCORE_QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


@dataclass(frozen=True)
class Run:
    """One published run: its date and its folder `as_of=YYYY-MM-DD`."""

    as_of: pd.Timestamp
    folder: Path

    @property
    def scores_path(self) -> Path:
        """The run's score rows."""
        return self.folder / SCORES_FILE


def run_folder(out_dir: Path, as_of: pd.Timestamp | str) -> Path:
    """Where the run as of a date lives."""
    return Path(out_dir) / f"{RUN_PREFIX}{pd.Timestamp(as_of).date()}"


def run_date(folder: Path | None) -> str | None:
    """The date a run folder is named for (None for no folder)."""
    return None if folder is None else folder.name.removeprefix(RUN_PREFIX)


def find_runs(scores_dir: Path) -> list[Run]:
    """Every published run under `scores_dir` (a folder with scores), oldest first.

    Folders without scores (a run still being written elsewhere, or broken) and names that
    are not dates are skipped; a missing `scores_dir` holds no runs.
    """
    runs = []
    for folder in Path(scores_dir).glob(f"{RUN_PREFIX}*"):
        if not (folder / SCORES_FILE).is_file():
            continue
        try:
            as_of = to_timestamp(folder.name.removeprefix(RUN_PREFIX))
        except ValueError:
            log.warning("skipping %s: not a date after %s", folder.name, RUN_PREFIX)
            continue
        runs.append(Run(as_of, folder))
    return sorted(runs, key=lambda r: r.as_of)


def previous_run(out_dir: Path, as_of: pd.Timestamp) -> Path | None:
    """The latest run before `as_of`: a re-run of a date never compares to itself."""
    day = pd.Timestamp(as_of).normalize()
    earlier = [run for run in find_runs(out_dir) if run.as_of < day]
    return earlier[-1].folder if earlier else None


def latest_run(scores_dir: Path, as_of: pd.Timestamp | None = None) -> Run | None:
    """The run of a date (when given), else the latest run; None when there is none."""
    runs = find_runs(scores_dir)
    if as_of is not None:
        day = pd.Timestamp(as_of).normalize()
        runs = [run for run in runs if run.as_of == day]
    return runs[-1] if runs else None


def summarise(scores: pd.DataFrame, timings: dict[str, float]) -> dict[str, Any]:
    """Counts, distributions and model versions of one run, for people and for monitoring."""
    quantiles = [0.1, 0.5, 0.9]
    return {
        "customers": len(scores),
        "model_versions": sorted(scores["model_version"].astype(str).unique().tolist()),
        "customer_equity": float(scores["clv"].sum()),
        "value_at_risk": float(scores["value_at_risk"].sum()),
        "mean_churn_probability": float(scores["churn_probability"].mean()),
        "churn_probability_quantiles": scores["churn_probability"]
        .quantile(quantiles)
        .round(4)
        .tolist(),
        "clv_quantiles": scores["clv"].quantile(quantiles).round(2).tolist(),
        "score_distributions": {
            column: {
                f"p{round(q * 100):02d}": round(float(v), 4)
                for q, v in scores[column].quantile(list(SCORE_QUANTILES)).items()
            }
            | {"mean": round(float(scores[column].mean()), 4)}
            for column in VALUE_COLUMNS
            if column in scores and len(scores)
        },
        "actions": {str(k): int(v) for k, v in scores["recommended_action"].value_counts().items()},
        "with_action": int((scores["recommended_action"] != NO_ACTION).sum()),
        "segments": {str(k): int(v) for k, v in scores["segment"].value_counts().items()},
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
    }


def read_summary(run: Run, scores: pd.DataFrame) -> dict[str, Any]:
    """The run's `summary.json`, its missing figures filled by `summarise` of its scores."""
    computed = summarise(scores, {})
    path = run.folder / SUMMARY_FILE
    stored: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text())
            stored = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            log.warning("%s is unreadable; its figures are recomputed from the scores", path)
    return {**computed, **stored}


def changes_path(run: Run) -> Path | None:
    """The run's list of customers whose action changed, when the batch wrote one."""
    return next((f for f in (run.folder / n for n in CHANGES_FILES) if f.is_file()), None)


# --- publishing ----------------------------------------------------------------------------------


@contextmanager
def exclusive(out_dir: Path) -> Iterator[None]:
    """One run at a time per output folder, and what a killed run left there tidied first.

    The lock is `flock` on the folder itself: no lock file to go stale, since the kernel
    releases it when the run ends or dies. Holding it, any `.staging-*` or `.retired-*`
    folder is a dead run's (see `staged`, `_swap`).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(out_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"another run is writing to {out_dir}; this one stopped before changing anything"
            ) from None
        _tidy(out_dir)
        yield
    finally:
        os.close(handle)


def _tidy(out_dir: Path) -> None:
    """Remove a dead run's folders; put back a run folder it had moved aside mid-swap."""
    for retired in sorted(out_dir.glob(".retired-*")):
        final = out_dir / retired.name.removeprefix(".retired-").rsplit("-", 1)[0]
        if final.exists():
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(retired, final)
            log.warning("put back %s, moved aside by a run that stopped mid-swap", final)
    for staging in out_dir.glob(".staging-*"):
        log.warning("removing %s, left by a run that did not finish", staging)
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged(out_dir: Path, as_of: pd.Timestamp) -> Iterator[Path]:
    """A fresh folder to write the run into, swapped in for `as_of=DATE/` only on success."""
    final = run_folder(out_dir, as_of)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".staging-{final.name}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        yield staging
        _swap(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, final: Path) -> None:
    """Replace `final` by `staging` with two renames; the old one comes back if the second fails."""
    if not final.exists():
        os.replace(staging, final)
        return
    retired = final.with_name(f".retired-{final.name}-{uuid.uuid4().hex}")
    os.replace(final, retired)
    try:
        os.replace(staging, final)
    except BaseException:
        os.replace(retired, final)
        raise
    shutil.rmtree(retired, ignore_errors=True)
