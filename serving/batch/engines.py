"""The engine step of the nightly run: validated tables in, every customer's score rows out.

An engine owns this one step; the run around it (freshness, changed actions, publishing, the
store) is `serving.batch.job`'s, which picks the engine by name. `score_all` is the local
engine; the Spark engine (`serving.batch.spark`) returns the same `Scored` and samples drift
with the same `split_by_customer`.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import pandas as pd
import polars as pl

from features.build import build_features
from features.schema import ID, Tables
from serving.scoring.scorer import Scorer

log = logging.getLogger(__name__)

# Customers per chunk: bounds the peak memory (sizes in docs/scheduling.md); the result is the
# same for any chunk size (tested).
DEFAULT_CHUNK_CUSTOMERS = 200_000

FeatureSink = Callable[[pd.DataFrame], None]


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
    hashes = _id_hashes(tables.transactions[ID])
    customers = int(pl.Series(hashes).n_unique())
    count = max(1, math.ceil(customers / chunk_customers))
    split = _Split(tables, count)
    if count == 1:
        return split
    for name in ("transactions", "customers", "events"):
        frame = getattr(tables, name)
        if frame is None:
            continue
        own = hashes if name == "transactions" else _id_hashes(frame[ID])
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
    order = np.argsort(scores[ID].to_numpy(dtype=str), kind="stable")
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
