"""The dashboard's reading edge: the published runs in a folder, their scores and changes."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from serving.runs import Run, changes_path, find_runs
from serving.scoring.columns import DASHBOARD_COLUMNS

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = DASHBOARD_COLUMNS


class ReportError(ValueError):
    """A scores folder (or run in it) the dashboard cannot be made from; the message says why."""


def published_runs(scores_dir: Path) -> list[Run]:
    """Every published run under `scores_dir`, oldest first.

    Raises:
        ReportError: the folder does not exist, or holds no run.
    """
    if not scores_dir.is_dir():
        raise ReportError(f"{scores_dir} is not a folder of scores (written by `vafa score`)")
    runs = find_runs(scores_dir)
    if not runs:
        raise ReportError(
            f"no runs under {scores_dir}: expected as_of=YYYY-MM-DD/scores.parquet "
            "folders, as `vafa score --out` writes them"
        )
    return runs


def read_scores(run: Run) -> pd.DataFrame:
    """The scores of a run, checked for the columns the dashboard needs.

    Raises:
        ReportError: the file cannot be read or lacks a required column.
    """
    path = run.scores_path
    try:
        scores = pd.read_parquet(path)
    except Exception as exc:
        raise ReportError(f"cannot read {path}: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in scores.columns]
    if missing:
        raise ReportError(f"{path} lacks the score columns {missing}")
    if scores.empty:
        raise ReportError(f"{path} has no rows")
    return scores


def read_changes(run: Run) -> pd.DataFrame | None:
    """The customers whose action changed since the previous run, when the batch listed them."""
    path = changes_path(run)
    if path is None:
        return None
    try:
        return pd.read_parquet(path)
    except Exception:
        log.warning("%s is unreadable; the changes section is left out", path)
        return None
