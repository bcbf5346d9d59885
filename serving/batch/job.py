"""Nightly batch scoring of every customer as of a date, in chunks, written aside and swapped in.

The run is: check freshness, score (the engine step: features and scores of every customer,
chunk by chunk), compare actions with the previous run, summarise, write the run folder aside,
upsert the scores store, then swap the folder in. A failure anywhere before the swap leaves
the previous folder and the store as they were. `score_all` is the local engine; another
engine (Spark) replaces that one step and shares everything else.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import polars as pl

from features.build import build_features
from features.io import write_frame
from features.schema import Tables
from serving.batch.monitoring import DRIFT_THRESHOLD, DriftMonitor, FreshnessRules, check_freshness
from serving.runs import exclusive, previous_run, run_date, run_folder, staged, summarise
from serving.scoring.scorer import Scorer
from serving.store import ScoreStore, safe_url

log = logging.getLogger(__name__)

# Customers per chunk: features and reasons of 200k customers take about a gigabyte; the
# result is the same for any chunk size (tested), only the peak memory changes.
DEFAULT_CHUNK_CUSTOMERS = 200_000

FeatureSink = Callable[[pd.DataFrame], None]


class BatchError(RuntimeError):
    """A scoring run failed; the message says what, and that the previous results are intact."""


@dataclass(frozen=True)
class Scored:
    """What an engine returns: one score row per customer (sorted by id), timings, chunks."""

    scores: pd.DataFrame
    timings: dict[str, float]
    chunks: int = 1


class Engine(Protocol):
    """The step an engine owns: validated tables in, every customer's score rows out.

    `on_features` is called with each chunk's feature rows (drift is counted from them).
    """

    def __call__(  # noqa: D102
        self,
        tables: Tables,
        as_of: pd.Timestamp,
        scorer: Scorer,
        *,
        chunk_customers: int | None = None,
        on_features: FeatureSink | None = None,
    ) -> Scored: ...


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


def score_all(
    tables: Tables,
    as_of: pd.Timestamp,
    scorer: Scorer,
    *,
    chunk_customers: int | None = None,
    on_features: FeatureSink | None = None,
) -> Scored:
    """The local engine: features and scores of every customer with a transaction before `as_of`.

    Customers are split into buckets by a hash of their id (all rows of a customer in one
    bucket), each bucket is featured and scored on its own, and the rows are put back in id
    order: the result equals the one-chunk run, while memory holds one bucket's work at a time.
    """
    started = time.perf_counter()
    parts = split_by_customer(tables, chunk_customers)
    timings = {"split_seconds": time.perf_counter() - started}
    event_types = scorer.bundle.spec.event_types or None
    frames: list[pd.DataFrame] = []
    features_s = drift_s = scoring_s = 0.0
    for index, part in enumerate(_progress(parts.tables(), parts.count), start=1):
        tick = time.perf_counter()
        features = build_features(part, as_of, event_types=event_types)
        built = time.perf_counter()
        if on_features is not None:
            on_features(features)
        counted = time.perf_counter()
        frames.append(scorer.score(features, as_of))
        done = time.perf_counter()
        del features, part
        features_s += built - tick
        drift_s += counted - built
        scoring_s += done - counted
        if parts.count > 1:
            log.debug(
                "chunk %d/%d: %d customers in %.1f s",
                index,
                parts.count,
                len(frames[-1]),
                done - tick,
            )
    tick = time.perf_counter()
    scores = frames[0] if len(frames) == 1 else _in_id_order(frames)
    timings |= {
        "features_seconds": features_s,
        "drift_seconds": drift_s,
        "scoring_seconds": scoring_s,
        "merge_seconds": time.perf_counter() - tick,
    }
    return Scored(scores, timings, parts.count)


def _spark(
    tables: Tables,
    as_of: pd.Timestamp,
    scorer: Scorer,
    *,
    chunk_customers: int | None = None,
    on_features: FeatureSink | None = None,
) -> Scored:
    """Spark (and its JVM) is imported only by the runs that ask for it."""
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


@dataclass
class _Split:
    """Bucket of every row of every table; the buckets' tables are cut on demand, one by one."""

    source: Tables
    count: int
    orders: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def tables(self) -> Iterator[Tables]:
        if self.count == 1:
            yield self.source
            return
        for k in range(self.count):
            cut = {}
            for name, (order, bounds) in self.orders.items():
                frame = getattr(self.source, name)
                cut[name] = frame.take(order[bounds[k] : bounds[k + 1]]).reset_index(drop=True)
            yield replace(self.source, **cut)


def split_by_customer(tables: Tables, chunk_customers: int | None) -> _Split:
    """Plan buckets of about `chunk_customers` customers each (by transactions' distinct ids)."""
    if chunk_customers is None:
        return _Split(tables, 1)
    hashes = _id_hashes(tables.transactions["customer_id"])
    customers = int(pl.Series(hashes).n_unique())
    count = max(1, math.ceil(customers / chunk_customers))
    split = _Split(tables, count)
    if count == 1:
        return split
    for name in ("transactions", "customers", "events"):
        frame = getattr(tables, name)
        if frame is None:
            continue
        own = hashes if name == "transactions" else _id_hashes(frame["customer_id"])
        bucket = own % np.uint64(count)
        # A stable sort keeps each customer's rows in their original order within a bucket.
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(count + 1, dtype=np.uint64))
        split.orders[name] = (order, bounds)
    return split


def _id_hashes(ids: pd.Series) -> np.ndarray:
    """A 64-bit hash per id, the same for the same id in every table of this process."""
    column = pl.from_pandas(ids.reset_index(drop=True).to_frame(), rechunk=False).to_series()
    return column.cast(pl.String).hash(seed=0).to_numpy()


def _in_id_order(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The chunks' rows as one frame in customer-id order, as a one-chunk run returns them."""
    scores = pd.concat(frames, ignore_index=True)
    for column in frames[0].columns:
        dtypes = {f[column].dtype for f in frames}
        if isinstance(frames[0][column].dtype, pd.CategoricalDtype) and len(dtypes) > 1:
            # Chunks saw different levels (concat would fall back to object): take the union,
            # sorted, as a one-pass run over every level has them.
            scores[column] = pd.api.types.union_categoricals(
                [f[column] for f in frames], sort_categories=True
            )
    order = np.argsort(scores["customer_id"].to_numpy(dtype=str), kind="stable")
    return scores.take(order).reset_index(drop=True)


def _progress(items: Iterator[Tables], total: int) -> Iterator[Tables]:
    """A progress bar on a terminal; plain log lines (one per chunk) in a cron job."""
    if total <= 1:
        yield from items
        return
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc="scoring", unit="chunk", file=sys.stderr)
        return
    started = time.perf_counter()
    for index, item in enumerate(items, start=1):
        yield item
        log.info("chunk %d/%d scored (%.0f s so far)", index, total, time.perf_counter() - started)


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
