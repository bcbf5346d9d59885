"""The feature table: one row per customer with a transaction before `as_of`, from all tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd
import polars as pl

from features.engagement import (
    event_features,
    event_slug,
    event_types_before,
    views_since_last_purchase,
)
from features.profile import PROFILE_CATEGORIES, profile_features
from features.rfm import ID, rfm_summary, transaction_features
from features.schema import KNOWN_EVENTS, Tables, to_timestamp

CATEGORICAL_FEATURES = ("dominant_channel", *PROFILE_CATEGORIES)


def default_event_types(tables: Tables, as_of: datetime) -> list[str]:
    """The known event vocabulary plus every other name seen before `as_of`."""
    seen = [] if tables.events is None else event_types_before(pl.from_pandas(tables.events), as_of)
    return sorted(set(KNOWN_EVENTS) | set(seen))


def build_features(
    tables: Tables,
    as_of: str | pd.Timestamp | datetime,
    *,
    event_types: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Features of every customer with a transaction before `as_of`, reading only rows before it.

    Args:
        tables: validated tables (see `features.io.load_tables`).
        as_of: the cutoff; rows with ts >= as_of are never read.
        event_types: event names that get columns; a trained model passes its own list so
            scoring yields its columns. Defaults to the known vocabulary plus names seen
            before `as_of`. Ignored without an events table.

    Returns:
        One row per customer sorted by customer_id: `customer_id`, then the columns of
        `transaction_features`, `event_features` (plus `product_views_since_purchase`) and
        `profile_features`, as far as the tables have the data. Numbers are float64,
        `CATEGORICAL_FEATURES` are pandas categoricals.
    """
    cutoff = to_timestamp(as_of).to_pydatetime()
    codes, customer_ids = pd.factorize(tables.transactions[ID], sort=True)
    transactions = _encoded(tables.transactions, codes)
    result = transaction_features(transactions, cutoff)
    if tables.events is not None:
        events = _encoded(tables.events, customer_ids.get_indexer(tables.events[ID]))
        types = (
            list(event_types) if event_types is not None else default_event_types(tables, cutoff)
        )
        engagement = event_features(events, cutoff, types)
        counts = [f"{event_slug(e)}_{suffix}" for e in types for suffix in ("total", "30d", "90d")]
        if "unresolved_tickets" in engagement.collect_schema().names():
            counts.append("unresolved_tickets")
        result = result.join(engagement, on=ID, how="left").with_columns(
            pl.col(counts).fill_null(0.0)
        )
        if "product_view" in types:
            views = views_since_last_purchase(events, cutoff, result)
            result = result.join(views, on=ID, how="left").with_columns(
                pl.col("product_views_since_purchase").fill_null(0.0)
            )
    if tables.customers is not None:
        customers = _encoded(tables.customers, customer_ids.get_indexer(tables.customers[ID]))
        result = result.join(profile_features(customers, cutoff), on=ID, how="left")
    frame = result.sort(ID).collect().to_pandas()
    frame[ID] = customer_ids[frame[ID].to_numpy()]
    return _finish_types(frame)


def _encoded(table: pd.DataFrame, codes: np.ndarray) -> pl.DataFrame:
    """The table with customer_id replaced by integer codes, rows of unknown customers dropped.

    Integer keys make every group-by a cheap one; codes follow the sorted customer ids, so
    sorting by code sorts by id.
    """
    frame = pl.from_pandas(table.drop(columns=ID)).with_columns(
        pl.Series(ID, codes, dtype=pl.Int64)
    )
    return frame.filter(pl.col(ID) >= 0).with_columns(pl.col(ID).cast(pl.UInt32))


def _finish_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Float64 numbers and categorical labels, whatever the engine inferred for empty frames."""
    dtypes = {
        c: "str" if c == ID else "category" if c in CATEGORICAL_FEATURES else "float64"
        for c in frame.columns
    }
    return frame.astype(dtypes)


def build_rfm_summary(tables: Tables, as_of: str | pd.Timestamp | datetime) -> pd.DataFrame:
    """The buy-till-you-die summary (frequency, recency, T, monetary_value) as of a date."""
    cutoff = to_timestamp(as_of).to_pydatetime()
    summary = rfm_summary(pl.from_pandas(tables.transactions), cutoff).sort(ID).collect()
    return _finish_types(summary.to_pandas())
