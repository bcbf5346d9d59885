"""Nightly batch scoring of every customer as of a date, in chunks, written aside and swapped in.

The run is: check freshness, score (the engine step: features and scores of every customer,
chunk by chunk), compare actions with the previous run, summarise, then publish folder and
scores store together (`serving.batch.publish`: both staged, the folder swapped in, the store
switched last), so a failure or a kill anywhere leaves both on the previous night, and the next
run settles what a killed one left. The engine step is chosen by name (`ENGINES`):
the local `serving.batch.engines.score_all`, or Spark (`serving.batch.spark`), which replaces
that one step and shares everything else.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.consistency import require_customers
from features.io import write_frame
from features.schema import Tables
from serving.batch import publish
from serving.batch.engines import DEFAULT_CHUNK_CUSTOMERS, Engine, FeatureSink, Scored, score_all
from serving.batch.monitoring import DRIFT_THRESHOLD, DriftMonitor, FreshnessRules, check_freshness
from serving.batch.publish import Night, describe, locked, outcome
from serving.runs import previous_run, run_date, run_folder, summarise
from serving.scoring.scorer import Scorer
from serving.store.database import ScoreStore
from serving.store.tables import StoreRun, safe_url

log = logging.getLogger(__name__)


class BatchError(RuntimeError):
    """A scoring run failed; the message says what, and what it left, as checked."""


@dataclass(frozen=True)
class BatchOptions:
    """How a run is done and judged.

    Attributes:
        chunk_customers: customers scored at once (bounds memory); None = all at once.
        drift_threshold: PSI above which a feature or score is flagged.
        freshness: when a table counts as stale.
        engine: name of the engine ("local"; see `ENGINES`).
        take_over_store: publish into a scores store that serves another output folder's
            runs (refused otherwise).
    """

    chunk_customers: int | None = DEFAULT_CHUNK_CUSTOMERS
    drift_threshold: float = DRIFT_THRESHOLD
    freshness: FreshnessRules = field(default_factory=FreshnessRules)
    engine: str = "local"
    take_over_store: bool = False


@dataclass(frozen=True)
class BatchResult:
    """Where the scores went and what the run looked like."""

    folder: Path
    scores: pd.DataFrame
    summary: dict[str, Any]

    @property
    def drift_flagged(self) -> bool:
        """Some feature or score moved past the threshold."""
        return bool(self.summary["drift"].get("flagged"))

    @property
    def stale(self) -> bool:
        """Some table looked stale or was missing."""
        return bool(self.summary["freshness"]["flags"])


def _spark(
    tables: Tables,
    as_of: pd.Timestamp,
    scorer: Scorer,
    *,
    chunk_customers: int | None = None,
    on_features: FeatureSink | None = None,
) -> Scored:
    """The Spark engine; pyspark (and its JVM) is imported only by the runs that ask for it."""
    from serving.batch.spark import spark_engine

    return spark_engine(
        tables, as_of, scorer, chunk_customers=chunk_customers, on_features=on_features
    )


ENGINES: dict[str, Engine] = {"local": score_all, "spark": _spark}


def engine_for(name: str) -> Engine:
    """The engine called `name`.

    Raises:
        ValueError: no such engine is wired (yet).
    """
    if name not in ENGINES:
        raise ValueError(
            f"engine {name!r} is not available (available: {', '.join(sorted(ENGINES))})"
        )
    return ENGINES[name]


# --- changes since the previous run ----------------------------------------------------------


def action_changes(
    scores: pd.DataFrame, previous: pd.DataFrame | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Customers whose recommended action differs from the previous run's, and the counts.

    Customers new since then are counted, not listed (they had no action to change from);
    customers gone since then are counted too.

    Returns:
        The changed customers (customer_id, previous_action, recommended_action, churn
        probability, value at risk) in id order, and {changed_actions, new_customers,
        dropped_customers, transitions} (transitions: "old -> new" counts, most common first).
    """
    columns = ["customer_id", "recommended_action", "churn_probability", "value_at_risk"]
    if previous is None:
        empty = scores[columns].head(0).assign(previous_action=pd.Series(dtype="str"))
        stats: dict[str, Any] = {
            "changed_actions": None,
            "new_customers": None,
            "dropped_customers": None,
        }
        return empty[["customer_id", "previous_action", *columns[1:]]], stats
    before = previous[["customer_id", "recommended_action"]].rename(
        columns={"recommended_action": "previous_action"}
    )
    joined = scores[columns].merge(before, on="customer_id", how="left", indicator=True)
    both = joined["_merge"] == "both"
    new_action = joined["recommended_action"].astype("str")
    old_action = joined["previous_action"].astype("str")
    changed = joined.loc[both & (new_action != old_action)]
    changed = changed[["customer_id", "previous_action", *columns[1:]]].reset_index(drop=True)
    changed = changed.astype({"previous_action": "str", "recommended_action": "str"})
    transitions = (
        changed["previous_action"] + " -> " + changed["recommended_action"]
    ).value_counts()
    kept = int(both.sum())
    stats = {
        "changed_actions": len(changed),
        "new_customers": int(len(scores) - kept),
        "dropped_customers": int(len(previous) - kept),
        "transitions": {str(k): int(v) for k, v in transitions.head(20).items()},
    }
    return changed, stats


def _read_previous(folder: Path | None) -> pd.DataFrame | None:
    """The previous run's ids and actions; an unreadable one is reported and skipped."""
    if folder is None:
        return None
    try:
        return pd.read_parquet(
            folder / "scores.parquet", columns=["customer_id", "recommended_action"]
        )
    except (OSError, ValueError, KeyError) as exc:
        log.warning("previous run %s unreadable, actions not compared: %s", folder.name, exc)
        return None


# --- the run ----------------------------------------------------------------------------------


def run_batch(
    tables: Tables,
    as_of: pd.Timestamp,
    scorer: Scorer,
    out_dir: Path,
    store: ScoreStore | None,
    options: BatchOptions = BatchOptions(),
    extra: dict[str, Any] | None = None,
) -> BatchResult:
    """Score everyone and publish `out_dir/as_of=DATE/` and the scores store together.

    Args:
        tables: validated tables.
        as_of: the date; only rows before it are read.
        scorer: the champion's scorer.
        out_dir: the output folder holding one `as_of=` folder per run.
        store: the scores store the night is published into (None: files only).
        options: chunking, thresholds, engine and whether to take the store over.
        extra: more facts for the summary (e.g. the data folder).

    Returns:
        The published folder, the scores and the summary.

    Raises:
        BatchError: any step failed; the message says what the folder and the store hold
            now (the previous night, or a cut-short publication the next run settles).
        DataValidationError: no customer has a transaction before `as_of` (before any step).
    """
    as_of = pd.Timestamp(as_of)
    out_dir = Path(out_dir)
    require_customers(tables, as_of)  # nobody to score is a data error: nothing is published
    before: StoreRun | str | None = "unknown"
    try:
        if store is not None:
            before = store.served()
        with locked(out_dir, store):
            if store is not None:
                store.check_source(out_dir, take_over=options.take_over_store)
            return _run(tables, as_of, scorer, out_dir, store, options, extra or {}, before)
    except Exception as exc:
        left = outcome(out_dir, store, before)
        raise BatchError(
            f"scoring as of {as_of.date()} failed: {type(exc).__name__}: {exc}. "
            f"{left[:1].upper()}{left[1:]}"
        ) from exc


def _run(
    tables: Tables,
    as_of: pd.Timestamp,
    scorer: Scorer,
    out_dir: Path,
    store: ScoreStore | None,
    options: BatchOptions,
    extra: dict[str, Any],
    before: StoreRun | str | None,
) -> BatchResult:
    engine = engine_for(options.engine)
    freshness = check_freshness(
        tables, as_of, options.freshness, expect_events=bool(scorer.bundle.spec.event_types)
    )
    for flag in freshness["flags"]:
        log.warning("stale data: %s", flag)
    monitor = DriftMonitor(scorer.bundle.reference, options.drift_threshold)
    scored = engine(
        tables,
        as_of,
        scorer,
        chunk_customers=options.chunk_customers,
        on_features=monitor.add_features,
    )
    publish.checkpoint("scored")
    scores = scored.scores
    monitor.add_scores(scores)
    drift = monitor.report()
    if drift["flagged"]:
        log.warning(
            "drift: %d columns past PSI %.2f, worst: %s",
            len(drift["flagged"]),
            options.drift_threshold,
            ", ".join(f"{c} {_psi_of(drift, c):.2f}" for c in drift["flagged"][:5]),
        )
    previous = previous_run(out_dir, as_of)
    changed, changes = action_changes(scores, _read_previous(previous))
    changes = {"previous_as_of": run_date(previous)} | changes
    summary: dict[str, Any] = (
        {"as_of": str(as_of.date()), "engine": options.engine, "chunks": scored.chunks}
        | extra
        | summarise(scores, scored.timings, scorer.bundle.config)
        | {"changes": changes, "drift": drift, "freshness": freshness}
    )
    night = Night(
        out_dir, as_of, store, take_over=options.take_over_store, data_dir=extra.get("data_dir")
    )
    with night:
        tick = time.perf_counter()
        write_frame(scores, night.staging / "scores.parquet")
        write_frame(scores, night.staging / "scores.csv")
        write_frame(changed, night.staging / "changed_actions.parquet")
        write_frame(changed, night.staging / "changed_actions.csv")
        publish.checkpoint("files_written")
        timings = summary["timings_seconds"]
        timings["write_seconds"] = round(time.perf_counter() - tick, 2)
        if store is not None:
            tick = time.perf_counter()
            staged = night.stage_store(scores)
            assert staged is not None
            summary["store"] = {
                "url": safe_url(store.url),
                "run_id": staged.run_id,
                "rows": staged.rows,
                "replaces": describe(before),
            }
            timings["store_seconds"] = round(time.perf_counter() - tick, 2)
            if isinstance(before, StoreRun) and before.as_of > as_of.date():
                log.warning(
                    "the scores store served %s, a later date: it serves this run from now on",
                    describe(before),
                )
        (night.staging / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        publish.checkpoint("summary_written")
        night.commit()
    return BatchResult(run_folder(out_dir, as_of), scores, summary)


def _psi_of(drift: dict[str, Any], column: str) -> float:
    return float(drift["features_psi"].get(column, drift["scores_psi"].get(column, math.nan)))


def score_with_champion(
    tables: Tables,
    as_of: pd.Timestamp,
    out_dir: Path,
    *,
    tracking_uri: str,
    store_url: str | None,
    options: BatchOptions | None = None,
    extra: dict[str, Any] | None = None,
) -> BatchResult:
    """The nightly job: score with the registry's champion, publish folder and store, log.

    Args:
        tables: validated tables.
        as_of: the date; only rows before it are read.
        out_dir: the output folder holding one `as_of=` folder per run.
        tracking_uri: the MLflow store holding the champion; the run is logged there too.
        store_url: the scores store to publish into (None: files only).
        options: chunking, thresholds, engine, store take-over; the defaults when None.
        extra: more facts for the summary (e.g. the data folder).

    Returns:
        The published folder, the scores and the summary.

    Raises:
        BatchError: the run failed; the message says what folder and store hold now.
        LookupError: the registry has no champion.
    """
    from serving.batch.monitoring import log_run
    from training.registry import configure_tracking, load_bundle

    configure_tracking(tracking_uri)
    scorer = Scorer(*load_bundle())
    store = ScoreStore(store_url) if store_url is not None else None
    try:
        result = run_batch(tables, as_of, scorer, out_dir, store, options or BatchOptions(), extra)
    finally:
        if store is not None:
            store.dispose()
    try:
        run_id = log_run(result.summary, tracking_uri, f"score-{as_of.date()}")
        log.info("scoring run logged to MLflow (run %s)", run_id)
    except Exception as exc:  # the scores are published; a monitoring outage must not undo that
        log.warning("could not log the scoring run to MLflow: %s", exc)
    return result
