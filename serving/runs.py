"""The one catalog of published scoring runs: where a run lives, finding runs, publishing one.

A run is a folder `OUT/as_of=YYYY-MM-DD/` holding `scores.parquet` (and CSV twins, the changed
actions and `summary.json`). It is written into a staging folder and swapped in whole, one run
at a time per output folder, so readers (the dashboard, campaigns, the next night's
comparison) only ever see complete runs. Campaigns planned from a run live outside it, in
`OUT/campaigns/as_of=YYYY-MM-DD/`, so re-scoring a date never deletes them. A journal
(`OUT/.publishing.json`) records a publication until it is settled, so a run killed mid-way
is finished or undone by the next one (`exclusive`); the caller decides which (the nightly
run asks its scores store).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.schema import to_timestamp
from serving.scoring.columns import ACTIVE_COLUMN, NO_ACTION, VALUE_COLUMNS
from training.intervals import SpendIntervals

log = logging.getLogger(__name__)

RUN_PREFIX = "as_of="
SCORES_FILE = "scores.parquet"
SUMMARY_FILE = "summary.json"
CHANGES_FILES = ("changed_actions.parquet", "changes.parquet")
CAMPAIGNS_DIR = "campaigns"
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


def campaign_folder(out_dir: Path, as_of: pd.Timestamp | str) -> Path:
    """Where the campaigns planned from the run as of a date live: `OUT/campaigns/as_of=DATE/`.

    Outside the run folder, which a re-run of the date replaces whole.
    """
    return Path(out_dir) / CAMPAIGNS_DIR / run_folder(Path(), as_of).name


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


def summarise(
    scores: pd.DataFrame, timings: dict[str, float], model_config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Counts, distributions and model versions of one run, for people and for monitoring.

    Args:
        scores: the run's score rows.
        timings: seconds per step.
        model_config: the scoring model's `ModelBundle.config`, for the customer equity's
            range (`equity_interval`); None: no range (a run summarised from its rows alone).
    """
    quantiles = [0.1, 0.5, 0.9]
    return {
        "customers": len(scores),
        "model_versions": sorted(scores["model_version"].astype(str).unique().tolist()),
        "customer_equity": float(scores["clv"].sum()),
        "customer_equity_interval": equity_interval(scores, model_config),
        "value_at_risk": float(scores["value_at_risk"].sum()),
        "mean_churn_probability": float(scores["churn_probability"].mean()),
        "decision_population": decision_population_figures(scores),
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


def equity_interval(
    scores: pd.DataFrame, model_config: Mapping[str, Any] | None
) -> dict[str, float | None] | None:
    """The customer equity's range at the model's level (`SpendIntervals.equity_interval`).

    Not the sum of the customers' ranges (far too wide: their misses mostly cancel); the
    model's stored spread per bin of predicted spend, added up over these customers, plus its
    level's own error. None when the model has no ranges or there is nobody.

    Returns:
        `level`, `low` and `high` (currency), and `low_factor` / `high_factor` (over the
        customer equity).
    """
    stored = (model_config or {}).get("spend_intervals")
    if not stored or scores.empty or not {"predicted_spend", "clv"} <= set(scores.columns):
        return None
    intervals = SpendIntervals.from_dict(stored)
    config = model_config or {}
    per_spend = float(config.get("margin_rate", 1.0)) * float(config.get("discount_factor", 1.0))
    low, high = intervals.equity_interval(scores["predicted_spend"], scores["clv"], per_spend)
    equity = float(scores["clv"].sum())
    return {
        "level": intervals.level,
        "low": low,
        "high": high,
        "low_factor": low / equity if equity > 0 else None,
        "high_factor": high / equity if equity > 0 else None,
    }


def decision_population_figures(scores: pd.DataFrame) -> dict[str, Any] | None:
    """Customers, churn and value at risk of the decision population (`features.population`).

    The scorer marks each row (`ACTIVE_COLUMN`); the run-wide figures beside these are over
    every customer. None for scores without the mark (scored before it existed).
    """
    if ACTIVE_COLUMN not in scores:
        return None
    active = scores[scores[ACTIVE_COLUMN].eq(True).to_numpy()]
    churn = float(active["churn_probability"].mean()) if len(active) else None
    return {
        "rule": "bought within the churn window before the date",
        "customers": len(active),
        "mean_churn_probability": churn,
        "customer_equity": float(active["clv"].sum()),
        "value_at_risk": float(active["value_at_risk"].sum()),
    }


def run_flags(summary: dict[str, Any]) -> dict[str, list[str]]:
    """The run's warnings from its summary: `stale` (freshness flags) and `drift` (columns)."""
    freshness = summary.get("freshness") or {}
    drift = summary.get("drift") or {}
    return {
        "stale": [str(flag) for flag in freshness.get("flags") or []],
        "drift": [str(column) for column in drift.get("flagged") or []],
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

JOURNAL = ".publishing.json"


class RunLocked(RuntimeError):
    """Another run holds the output folder."""


@dataclass(frozen=True)
class Publication:
    """A run folder being published, as its journal `OUT/.publishing.json` records it.

    The journal is written before the first rename and removed once the publication is
    settled, so a run killed in between leaves what the next one needs to undo or finish it.

    Attributes:
        final: the run's folder `as_of=DATE/`.
        staging: the folder the run was written into.
        retired: where the folder it replaces waits until the publication is settled.
        commit: what decides whether the publication took effect (the scores store's run);
            None when the swap itself does.
    """

    final: Path
    staging: Path
    retired: Path
    commit: dict[str, Any] | None

    @property
    def journal(self) -> Path:
        """The journal file."""
        return self.final.parent / JOURNAL


Committed = Callable[[Publication], bool]
"""Asked, holding the lock, whether a dead run's publication took effect."""


@contextmanager
def exclusive(out_dir: Path, committed: Committed | None = None) -> Iterator[None]:
    """One run at a time per output folder, and what a dead run left there settled first.

    The lock is `flock` on the folder itself: no lock file to go stale, since the kernel
    releases it when the run ends or dies. Holding it, a journal is a dead run's publication:
    it is finished when `committed` says it took effect, undone otherwise (without a store,
    when its swap was done). Any `.staging-*` or `.retired-*` folder left is a dead run's.

    Raises:
        RunLocked: another run holds the folder.
        RuntimeError: a dead run's publication needs a store this run was not given.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(out_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(
                f"another run is writing to {out_dir}; this one stopped before changing anything"
            ) from None
        dead = pending(out_dir)
        if dead is not None:
            settle(dead, _took_effect(dead, committed))
        _tidy(out_dir)
        yield
    finally:
        os.close(handle)


def _took_effect(publication: Publication, committed: Committed | None) -> bool:
    if publication.commit is None:  # the swap was the commit
        return not publication.staging.exists() and publication.final.exists()
    if committed is None:
        raise RuntimeError(
            f"a run that died while publishing {publication.final} into a scores store left "
            f"{publication.journal}; run again with that store to settle it"
        )
    return committed(publication)


def pending(out_dir: Path) -> Publication | None:
    """The publication a journal in `out_dir` records, if any.

    Raises:
        RuntimeError: the journal is unreadable (it is written whole, so this is not a crash).
    """
    path = Path(out_dir) / JOURNAL
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text())
        return Publication(
            final=path.parent / entry["final"],
            staging=path.parent / entry["staging"],
            retired=path.parent / entry["retired"],
            commit=entry["commit"],
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(
            f"{path} is unreadable ({exc}): check the run folders, then remove it"
        ) from exc


def staging_folder(out_dir: Path, as_of: pd.Timestamp) -> Path:
    """A fresh folder to write a run into, next to its final folder."""
    final = run_folder(out_dir, as_of)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".staging-{final.name}-{uuid.uuid4().hex}"
    staging.mkdir()
    return staging


def begin(staging: Path, as_of: pd.Timestamp, commit: dict[str, Any] | None) -> Publication:
    """Write the journal of publishing `staging` as the run of `as_of` (before any rename)."""
    final = run_folder(staging.parent, as_of)
    publication = Publication(
        final=final,
        staging=staging,
        retired=final.with_name(f".retired-{final.name}-{uuid.uuid4().hex}"),
        commit=commit,
    )
    entry = {
        "final": final.name,
        "staging": staging.name,
        "retired": publication.retired.name,
        "commit": commit,
    }
    draft = publication.journal.with_name(f"{JOURNAL}.draft")
    try:
        with open(draft, "w") as handle:
            handle.write(json.dumps(entry))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(draft, publication.journal)
    finally:
        draft.unlink(missing_ok=True)
    return publication


def swap_in(publication: Publication) -> None:
    """Move the run's old folder aside and the staging folder in; the old one stays aside."""
    _swap(publication.staging, publication.final, publication.retired)


def settle(publication: Publication, took_effect: bool) -> None:
    """Finish a publication (its folder stays, the old one goes) or undo it, then close it.

    Safe to repeat after a crash half-way: each step is a rename or a removal of a folder
    readers never look at.
    """
    final, staging, retired = publication.final, publication.staging, publication.retired
    if took_effect:
        if staging.exists():  # the swap had not happened: do it now
            _swap(staging, final, retired)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        if not staging.exists() and final.exists():  # swapped in: take it out again
            os.replace(final, final.with_name(f".staging-{final.name}-undone-{uuid.uuid4().hex}"))
        if retired.exists() and not final.exists():
            os.replace(retired, final)
        for leftover in publication.final.parent.glob(f".staging-{final.name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    publication.journal.unlink(missing_ok=True)


def remove_run(out_dir: Path, as_of: pd.Timestamp | str) -> Path | None:
    """Unpublish the run of a date: renamed out of sight first, then removed; None if absent.

    Call it holding the folder's lock (`exclusive`).
    """
    final = run_folder(out_dir, as_of)
    if not final.exists():
        return None
    aside = final.with_name(f".staging-{final.name}-removed-{uuid.uuid4().hex}")
    os.replace(final, aside)
    shutil.rmtree(aside, ignore_errors=True)
    return final


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
    (out_dir / f"{JOURNAL}.draft").unlink(missing_ok=True)


@contextmanager
def staged(out_dir: Path, as_of: pd.Timestamp) -> Iterator[Path]:
    """A fresh folder to write the run into, swapped in for `as_of=DATE/` only on success.

    For a run whose folder is all it publishes; the nightly run, which publishes a store
    too, uses `begin`, `swap_in` and `settle` (serving/batch/publish.py).
    """
    staging = staging_folder(out_dir, as_of)
    try:
        yield staging
        publication = begin(staging, as_of, None)
        try:
            swap_in(publication)
        finally:
            settle(publication, _took_effect(publication, None))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, final: Path, retired: Path) -> None:
    """Replace `final` by `staging` with two renames; the old one comes back if the second fails."""
    if not final.exists():
        os.replace(staging, final)
        return
    os.replace(final, retired)
    try:
        os.replace(staging, final)
    except BaseException:
        os.replace(retired, final)
        raise
