"""Labels (churn, future spend and margin) and stacked feature+label training snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd
import polars as pl

from features.build import CATEGORICAL_FEATURES, build_features, default_event_types
from features.rfm import ID
from features.schema import Tables, to_timestamp

LABEL_COLUMNS = ("churned", "future_orders", "future_spend", "future_margin")
DEFAULT_MARGIN_RATE = 0.3


def build_labels(
    tables: Tables,
    as_of: str | pd.Timestamp | datetime,
    churn_window_days: int | None = 90,
    horizon_days: int | None = 365,
    margin_rate: float = DEFAULT_MARGIN_RATE,
) -> pd.DataFrame:
    """What happened after `as_of` to every customer with a transaction before it.

    The caller must hold data up to `as_of + window`; a window that runs past the data
    reads as "no purchase". `build_training_set` guards this.

    Args:
        tables: validated tables.
        as_of: the cutoff; the population is the customers with a transaction before it.
        churn_window_days: churn window; None skips `churned`.
        horizon_days: spend horizon; None skips the future_* columns.
        margin_rate: margin per unit of revenue for rows without a margin value.

    Returns:
        One row per customer sorted by customer_id with:
        churned: 1.0 if no purchase (amount >= 0) in [as_of, as_of + churn window), else 0.0.
        future_orders: purchase days in [as_of, as_of + horizon).
        future_spend: net revenue (refunds deducted) in the horizon, floored at 0.
        future_margin: gross margin in the horizon (the row's margin, else
            amount x margin_rate), floored at 0.
    """
    cutoff = to_timestamp(as_of).to_pydatetime()
    tx = pl.from_pandas(tables.transactions).lazy()
    population = tx.filter(pl.col("ts") < cutoff).select(ID).unique()
    labels = population
    if churn_window_days is not None:
        end = cutoff + timedelta(days=churn_window_days)
        buyers = (
            tx.filter((pl.col("ts") >= cutoff) & (pl.col("ts") < end) & (pl.col("amount") >= 0))
            .select(ID)
            .unique()
            .with_columns(churned=pl.lit(0.0))
        )
        labels = labels.join(buyers, on=ID, how="left").with_columns(
            pl.col("churned").fill_null(1.0)
        )
    if horizon_days is not None:
        end = cutoff + timedelta(days=horizon_days)
        margin = pl.col("amount") * margin_rate
        if "margin" in tables.transactions.columns:
            margin = pl.coalesce(pl.col("margin"), margin)
        future = (
            tx.filter((pl.col("ts") >= cutoff) & (pl.col("ts") < end))
            .group_by(ID)
            .agg(
                future_orders=pl.col("ts").filter(pl.col("amount") >= 0).dt.date().n_unique(),
                future_spend=pl.col("amount").sum(),
                future_margin=margin.sum(),
            )
        )
        labels = labels.join(future, on=ID, how="left").with_columns(
            pl.col("future_orders").fill_null(0).cast(pl.Float64),
            pl.col("future_spend", "future_margin").fill_null(0.0).clip(lower_bound=0.0),
        )
    return labels.sort(ID).collect().to_pandas().astype({ID: "str"})


def snapshot_cutoffs(
    as_of: str | pd.Timestamp | datetime,
    label_days: int,
    n_snapshots: int,
    spacing_days: int,
) -> list[pd.Timestamp]:
    """Cutoffs, oldest first, whose label windows of `label_days` all end on or before `as_of`."""
    end = to_timestamp(as_of)
    latest = end - pd.Timedelta(days=label_days)
    return [latest - pd.Timedelta(days=spacing_days * k) for k in reversed(range(n_snapshots))]


def build_training_set(
    tables: Tables,
    as_of: str | pd.Timestamp | datetime,
    cutoffs: Sequence[str | pd.Timestamp | datetime],
    *,
    churn_window_days: int = 90,
    horizon_days: int = 365,
    margin_rate: float = DEFAULT_MARGIN_RATE,
    event_types: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Feature and label snapshots at each cutoff, stacked, using only rows before `as_of`.

    A label whose window would run past `as_of` is left null (never read from beyond it):
    recent cutoffs can train the churn model before their spend horizon has closed.

    Args:
        tables: validated tables.
        as_of: the training date; no row with ts >= as_of is read.
        cutoffs: snapshot dates, each before `as_of`.
        churn_window_days: churn window of the `churned` label.
        horizon_days: horizon of the future_* labels.
        margin_rate: margin per unit of revenue for rows without a margin value.
        event_types: event columns; defaults to those known as of `as_of`.

    Returns:
        `as_of` (the snapshot's cutoff), the feature columns and `LABEL_COLUMNS`, one row per
        customer and cutoff.

    Raises:
        ValueError: if a cutoff is not before `as_of` or no cutoff has a complete label.
    """
    end = to_timestamp(as_of)
    past = tables.before(end)
    stamps = sorted(to_timestamp(c) for c in cutoffs)
    if not stamps or stamps[-1] >= end:
        raise ValueError(f"every snapshot cutoff must be before the training date {end.date()}")
    window = pd.Timedelta(days=min(churn_window_days, horizon_days))
    if stamps[0] + window > end:
        raise ValueError(
            f"no snapshot before {end.date()} has a complete label window: the earliest cutoff "
            f"{stamps[0].date()} needs data until {(stamps[0] + window).date()}"
        )
    types = event_types if event_types is not None else default_event_types(past, end)
    snapshots = []
    for cutoff in stamps:
        churn_fits = cutoff + pd.Timedelta(days=churn_window_days) <= end
        spend_fits = cutoff + pd.Timedelta(days=horizon_days) <= end
        features = build_features(past, cutoff, event_types=types)
        labels = build_labels(
            past,
            cutoff,
            churn_window_days if churn_fits else None,
            horizon_days if spend_fits else None,
            margin_rate,
        )
        snapshot = features.merge(labels, on=ID, how="left", validate="one_to_one")
        snapshot = snapshot.reindex(columns=[*features.columns, *LABEL_COLUMNS])
        snapshots.append(
            pd.concat([pd.Series(cutoff, snapshot.index, name="as_of"), snapshot], axis=1)
        )
    stacked = pd.concat(snapshots, ignore_index=True)
    # Snapshots may know different category levels; concat turns those into objects.
    categorical = [c for c in CATEGORICAL_FEATURES if c in stacked.columns]
    return stacked.astype(
        {c: "float64" for c in LABEL_COLUMNS} | dict.fromkeys(categorical, "category")
    )
