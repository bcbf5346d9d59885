"""Nightly batch scoring of every customer as of a date, in chunks, written aside and swapped in.

The run is: check freshness, score (the engine step: features and scores of every customer,
chunk by chunk), compare actions with the previous run, summarise, write the run folder aside,
upsert the scores store, then swap the folder in. A failure anywhere before the swap leaves
the previous folder and the store as they were. The engine step is chosen by name (`ENGINES`):
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

from features.io import write_frame
from features.schema import Tables
from serving.batch.engines import DEFAULT_CHUNK_CUSTOMERS, Engine, FeatureSink, Scored, score_all
from serving.batch.monitoring import DRIFT_THRESHOLD, DriftMonitor, FreshnessRules, check_freshness
from serving.runs import exclusive, previous_run, run_date, run_folder, staged, summarise
from serving.scoring.scorer import Scorer
from serving.store import ScoreStore, safe_url

log = logging.getLogger(__name__)


class BatchError(RuntimeError):
    """A scoring run failed; the message says what, and that the previous results are intact."""


@dataclass(frozen=True)
class BatchOptions:
    """How a run is done and judged.

    Attributes:
        chunk_customers: customers scored at once (bounds memory); None = all at once.
        drift_threshold: PSI above which a feature or score is flagged.
        freshness: when a table counts as stale.
        engine: name of the engine ("local"; see `ENGINES`).
    """

    chunk_customers: int | None = DEFAULT_CHUNK_CUSTOMERS
    drift_threshold: float = DRIFT_THRESHOLD
    freshness: FreshnessRules = field(default_factory=FreshnessRules)
    engine: str = "local"


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
    """Score everyone, write `out_dir/as_of=DATE/` aside, upsert the store, swap the folder in.

    Args:
        tables: validated tables.
        as_of: the date; only rows before it are read.
        scorer: the champion's scorer.
        out_dir: the output folder holding one `as_of=` folder per run.
        store: the scores store to upsert (None: files only).
        options: chunking, thresholds and engine.
        extra: more facts for the summary (e.g. the data folder).

    Returns:
        The published folder, the scores and the summary.

    Raises:
        BatchError: any step failed; the previous folder and the store are unchanged.
    """
    as_of = pd.Timestamp(as_of)
    try:
        with exclusive(Path(out_dir)):
            return _run(tables, as_of, scorer, Path(out_dir), store, options, extra or {})
    except Exception as exc:
        raise BatchError(
            f"scoring as of {as_of.date()} failed; {run_folder(Path(out_dir), as_of)} and the "
            f"scores store were left as they were: {type(exc).__name__}: {exc}"
        ) from exc


def _run(
    tables: Tables,
    as_of: pd.Timestamp,
    scorer: Scorer,
    out_dir: Path,
    store: ScoreStore | None,
    options: BatchOptions,
    extra: dict[str, Any],
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
        | summarise(scores, scored.timings)
        | {"changes": changes, "drift": drift, "freshness": freshness}
    )
    with staged(out_dir, as_of) as staging:
        tick = time.perf_counter()
        write_frame(scores, staging / "scores.parquet")
        write_frame(scores, staging / "scores.csv")
        write_frame(changed, staging / "changed_actions.parquet")
        write_frame(changed, staging / "changed_actions.csv")
        timings = summary["timings_seconds"]
        timings["write_seconds"] = round(time.perf_counter() - tick, 2)
        if store is not None:
            tick = time.perf_counter()
            rows = store.upsert(scores)
            summary["store"] = {"url": safe_url(store.url), "rows": rows}
            timings["store_seconds"] = round(time.perf_counter() - tick, 2)
        (staging / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
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
    """The nightly job: score with the registry's champion, publish, upsert, log to MLflow.

    Args:
        tables: validated tables.
        as_of: the date; only rows before it are read.
        out_dir: the output folder holding one `as_of=` folder per run.
        tracking_uri: the MLflow store holding the champion; the run is logged there too.
        store_url: the scores store to upsert (None: files only).
        options: chunking, thresholds and engine; the defaults when None.
        extra: more facts for the summary (e.g. the data folder).

    Returns:
        The published folder, the scores and the summary.

    Raises:
        BatchError: the run failed; the previous folder and the store are unchanged.
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
