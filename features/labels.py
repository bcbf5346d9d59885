"""Labels (churn, future spend and margin) and stacked feature+label training snapshots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
import polars as pl
from numpy.typing import DTypeLike
from pandas.api.types import union_categoricals

from features.build import (
    CATEGORICAL_FEATURES,
    EncodedTables,
    default_event_types,
    encode_tables,
    feature_columns,
)
from features.columns import floats
from features.rfm import (
    ID,
    US_PER_DAY,
    factorize,
    group_min,
    group_sum,
    labels,
    micros,
    pair_counts,
    timestamps_us,
)
from features.schema import Tables, to_timestamp
from features.subscriptions import GRACE_DAYS, holds_term, lapse_at, lapse_blocks

LABEL_COLUMNS = ("churned", "future_orders", "future_spend", "future_margin")
DEFAULT_MARGIN_RATE = 0.3

ChurnDefinition = Literal["inactivity", "contractual"]
CHURN_DEFINITIONS: tuple[ChurnDefinition, ...] = ("inactivity", "contractual")
"""What `churned` means. inactivity: customers with a transaction before T, churned without a
purchase in [T, T + window). contractual: customers holding a subscription term at T
(`features.subscriptions.holds_term`), churned when their coverage lapses in the window
(`contractual_labels`)."""

_NAT_US = np.iinfo(np.int64).min


def label_days(definition: ChurnDefinition, churn_window_days: int) -> int:
    """Days of data after a cutoff its churn label reads: the window, plus the grace if contractual.

    A contractual lapse near the window's end is judged by the terms starting within the
    grace after it.
    """
    _check_definition(definition)
    return churn_window_days + (GRACE_DAYS if definition == "contractual" else 0)


def _check_definition(definition: str) -> None:
    if definition not in CHURN_DEFINITIONS:
        raise ValueError(
            f"unknown churn definition {definition!r}: expected one of {list(CHURN_DEFINITIONS)}"
        )


def contractual_labels(
    subscriptions: pd.DataFrame,
    as_of: str | pd.Timestamp | datetime,
    churn_window_days: int = 90,
    grace_days: int = GRACE_DAYS,
) -> pd.DataFrame:
    """Whether each subscriber at `as_of` lets their subscription lapse within the window.

    The population is the customers holding a term at T (start_ts < T <= end_ts: a term ending
    exactly at T counts, so renewals at midnight T are in). Their coverage runs through every
    term overlapping it or starting at most `grace_days` after its latest end; it lapses where
    it stops. `churned` is 1.0 when the lapse is before T + window (a lapse at T itself too),
    else 0.0. Terms starting after T + window + grace are never read (they could not bridge a
    lapse in the window); `cancel_ts` is not read either: a notice ends nothing before the
    term's own end, and the missing next term is what makes the lapse. The caller must hold
    the terms starting up to `as_of + window + grace` (`label_days`).

    Returns:
        customer_id, churned (float), lapse_ts (the first moment uncovered; NaT when not
        churned), one row per subscriber at T, sorted by customer_id.
    """
    cutoff = to_timestamp(as_of)
    window_end = cutoff + pd.Timedelta(days=churn_window_days)
    terms = subscriptions[subscriptions["start_ts"] < window_end + pd.Timedelta(days=grace_days)]
    ids = factorize(terms[ID], sort=True)
    start = timestamps_us(terms["start_ts"])
    end = timestamps_us(terms["end_ts"])
    run_end = lapse_blocks(ids.codes, start, end, grace_days)
    lapse = lapse_at(ids.codes, start, end, run_end, len(ids), cutoff.to_pydatetime())
    held = np.flatnonzero(lapse != _NAT_US)
    lapse = lapse[held]
    churned = lapse < micros(window_end.to_pydatetime())
    return pd.DataFrame(
        {
            ID: labels(ids.names, held),
            "churned": churned.astype(np.float64),
            "lapse_ts": np.where(churned, lapse, _NAT_US).view("datetime64[us]"),
        }
    )


def build_labels(
    tables: Tables,
    as_of: str | pd.Timestamp | datetime,
    churn_window_days: int | None = 90,
    horizon_days: int | None = 365,
    margin_rate: float = DEFAULT_MARGIN_RATE,
    definition: ChurnDefinition = "inactivity",
) -> pd.DataFrame:
    """What happened after `as_of` to every customer of the definition's population.

    The caller must hold data up to `as_of + label_days(definition, window)`; a window that
    runs past the data reads as "no purchase" (or a lapse). `build_training_set` guards this.

    Args:
        tables: validated tables.
        as_of: the cutoff; the population is the customers with a transaction before it
            (inactivity) or holding a subscription term at it (contractual).
        churn_window_days: churn window; None skips `churned`.
        horizon_days: spend horizon; None skips the future_* columns.
        margin_rate: margin per unit of revenue for rows without a margin value.
        definition: one of `CHURN_DEFINITIONS`; contractual churn is `contractual_labels`.

    Returns:
        One row per customer sorted by customer_id with:
        churned: 1.0 if no purchase (amount >= 0) in [as_of, as_of + churn window), else 0.0
            (contractual: 1.0 if the subscription lapses in the window).
        future_orders: purchase days in [as_of, as_of + horizon).
        future_spend: net revenue (refunds deducted) in the horizon, floored at 0.
        future_margin: gross margin in the horizon (the row's margin, else
            amount x margin_rate), floored at 0.
    """
    _check_definition(definition)
    if definition == "contractual":
        return _contractual_build_labels(
            tables, as_of, churn_window_days, horizon_days, margin_rate
        )
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


def _contractual_build_labels(
    tables: Tables,
    as_of: str | pd.Timestamp | datetime,
    churn_window_days: int | None,
    horizon_days: int | None,
    margin_rate: float,
) -> pd.DataFrame:
    """`build_labels` of contractual churn: the subscribers' lapses, everyone's spend.

    The rows are the customers with a transaction before `as_of` or a term held at it (those
    the features describe); `churned` is null for the non-subscribers among them.
    """
    if tables.subscriptions is None:
        raise ValueError("contractual churn needs a subscriptions table; this data has none")
    contract = contractual_labels(tables.subscriptions, as_of, churn_window_days or 0)
    out = contract[[ID, "churned"]] if churn_window_days is not None else contract[[ID]]
    spend = build_labels(tables, as_of, None, horizon_days, margin_rate)
    out = out.merge(spend, on=ID, how="outer").sort_values(ID, ignore_index=True)
    future = [c for c in ("future_orders", "future_spend", "future_margin") if c in out]
    out[future] = out[future].fillna(0.0)
    return out


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


def customer_draws(ids: pd.Series | pd.api.extensions.ExtensionArray, seed: int) -> np.ndarray:
    """A seeded number in [0, 1) per customer id, the same wherever and whenever it is drawn.

    A hash of the id, not a random stream: a customer draws the same number at every cutoff
    and in every run with the seed, so `draw < share` keeps a customer's snapshots together,
    and a smaller share keeps a subset of a larger one's customers.
    """
    key = f"vafa{seed % 16**12:012x}"  # hash_pandas_object wants 16 characters
    hashed = pd.util.hash_pandas_object(pd.Series(ids), index=False, hash_key=key).to_numpy()
    return (hashed >> np.uint64(11)).astype(np.float64) * 2.0**-53


def build_training_set(
    tables: Tables,
    as_of: str | pd.Timestamp | datetime,
    cutoffs: Sequence[str | pd.Timestamp | datetime],
    *,
    churn_window_days: int = 90,
    horizon_days: int = 365,
    margin_rate: float = DEFAULT_MARGIN_RATE,
    event_types: Sequence[str] | None = None,
    sample: Mapping[pd.Timestamp, float] | None = None,
    seed: int = 0,
    feature_dtype: DTypeLike = np.float64,
    definition: ChurnDefinition = "inactivity",
) -> pd.DataFrame:
    """Feature and label snapshots at each cutoff, stacked, using only rows before `as_of`.

    A label whose window would run past `as_of` is left null (never read from beyond it):
    recent cutoffs can train the churn model before their spend horizon has closed.

    The rows are `build_features` and `build_labels` at each cutoff, built in one go: the
    tables are encoded once (`features.build.encode_tables`), the labels of every cutoff
    come from one time-sorted pass over the transactions, and each snapshot's rows are
    written straight into the stacked columns (no per-snapshot frames to concatenate).

    Args:
        tables: validated tables.
        as_of: the training date; no row with ts >= as_of is read.
        cutoffs: snapshot dates, each before `as_of`.
        churn_window_days: churn window of the `churned` label.
        horizon_days: horizon of the future_* labels.
        margin_rate: margin per unit of revenue for rows without a margin value.
        event_types: event columns; defaults to those known as of `as_of`.
        sample: the share of customers kept at a cutoff, those whose `customer_draws` is
            below it (a customer's snapshots stay together across cutoffs with the same
            share); a cutoff not in it keeps every customer. None keeps everyone.
        seed: seeds `customer_draws`.
        feature_dtype: the dtype of the numeric features; float32 halves their memory.
        definition: one of `CHURN_DEFINITIONS`: the rows of a cutoff are its population (a
            transaction before it, or a subscription term held at it) and `churned` follows
            it; a contractual label needs `label_days` of data after its cutoff.

    Returns:
        `as_of` (the snapshot's cutoff), the feature columns and `LABEL_COLUMNS`, one row per
        customer and cutoff, by cutoff then customer id.

    Raises:
        ValueError: if a cutoff is not before `as_of`, no cutoff has a complete label, a
            share is not in (0, 1], the definition is unknown, or a contractual definition
            has no subscriptions table.
    """
    _check_definition(definition)
    end = to_timestamp(as_of)
    past = tables.before(end)
    if definition == "contractual" and past.subscriptions is None:
        raise ValueError("contractual churn needs a subscriptions table; this data has none")
    stamps = sorted({to_timestamp(c) for c in cutoffs})
    if not stamps or stamps[-1] >= end:
        raise ValueError(f"every snapshot cutoff must be before the training date {end.date()}")
    churn_days = label_days(definition, churn_window_days)
    window = pd.Timedelta(days=min(churn_days, horizon_days))
    if stamps[0] + window > end:
        raise ValueError(
            f"no snapshot before {end.date()} has a complete label window: the earliest cutoff "
            f"{stamps[0].date()} needs data until {(stamps[0] + window).date()}"
        )
    shares = {to_timestamp(c): float(v) for c, v in (sample or {}).items()}
    bad = {str(c.date()): v for c, v in shares.items() if not 0 < v <= 1}
    if bad:
        raise ValueError(f"sample shares must be in (0, 1], got {bad}")
    types = event_types if event_types is not None else default_event_types(past, end)
    encoded = encode_tables(past)
    future = _Future(past, encoded, margin_rate)
    contract = None if past.subscriptions is None else _Contract(past, encoded)
    draws = None
    if any(v < 1 for v in shares.values()):
        draws = customer_draws(labels(encoded.transactions[ID].names, np.arange(future.n)), seed)
    rows = {}
    for cutoff in stamps:
        kept = future.first_us < micros(cutoff.to_pydatetime())
        if contract is not None and definition == "contractual":
            kept |= contract.holds(cutoff)  # churn rows are the subscribers; spend rows all
        if draws is not None and shares.get(cutoff, 1.0) < 1:
            kept &= draws < shares[cutoff]
        rows[cutoff] = np.flatnonzero(kept)
    stacked = _Stacked(sum(len(r) for r in rows.values()), feature_dtype)
    for cutoff in stamps:
        churn_fits = cutoff + pd.Timedelta(days=churn_days) <= end
        spend_fits = cutoff + pd.Timedelta(days=horizon_days) <= end
        features = feature_columns(past, cutoff, event_types=types, encoded=encoded)
        # The feature rows: a transaction before the cutoff, or a subscription term held at it.
        in_features = future.first_us < micros(cutoff.to_pydatetime())
        if contract is not None:
            in_features |= contract.holds(cutoff)
        present = np.flatnonzero(in_features)
        if len(features.pop(ID)) != len(present):
            raise RuntimeError(f"the features at {cutoff.date()} are not of the labelled customers")
        # The feature rows are the present customers in code order: keep the sampled ones.
        sampled = len(present) != len(rows[cutoff])
        inactivity = definition == "inactivity"
        snapshot_labels = future.labels(
            cutoff,
            churn_window_days if churn_fits and inactivity else None,
            horizon_days if spend_fits else None,
        )
        if contract is not None and churn_fits and not inactivity:
            snapshot_labels["churned"] = np.where(
                contract.holds(cutoff), contract.churned(cutoff, churn_window_days), np.nan
            )
        stacked.add(
            cutoff,
            rows[cutoff],
            features,
            np.searchsorted(present, rows[cutoff]) if sampled else None,
            snapshot_labels,
        )
    return stacked.frame(encoded.transactions[ID].names)


class _Contract:
    """The subscription terms as customer codes, with each term's run of coverage made once."""

    def __init__(self, tables: Tables, encoded: EncodedTables) -> None:
        assert tables.subscriptions is not None and encoded.subscriptions is not None
        terms = tables.subscriptions
        self.customer = encoded.subscriptions[ID].codes
        self.n = len(encoded.transactions[ID])
        self.start = timestamps_us(terms["start_ts"])
        self.end = timestamps_us(terms["end_ts"])
        self.run_end = lapse_blocks(self.customer, self.start, self.end, GRACE_DAYS)
        self.terms = terms

    def holds(self, cutoff: pd.Timestamp) -> np.ndarray:
        """Whether each customer code holds a term at the cutoff (the contractual population)."""
        return holds_term(self.terms, self.customer, self.n, cutoff.to_pydatetime())

    def churned(self, cutoff: pd.Timestamp, churn_window_days: int) -> np.ndarray:
        """`contractual_labels`' churned per customer code (meaningless for non-subscribers)."""
        lapse = lapse_at(
            self.customer, self.start, self.end, self.run_end, self.n, cutoff.to_pydatetime()
        )
        window_end = micros((cutoff + pd.Timedelta(days=churn_window_days)).to_pydatetime())
        return np.where(lapse < window_end, 1.0, 0.0)


class _Future:
    """What the labels read, with the transactions' times sorted once.

    A label window is a slice of the sorted times; its rows are summed in table order.
    Counts equal `build_labels` to the bit, sums of money to rounding (polars compensates
    its sums): a difference in the last digit or two.
    """

    def __init__(self, tables: Tables, encoded: EncodedTables, margin_rate: float) -> None:
        tx = tables.transactions
        self.customer = encoded.transactions[ID].codes
        self.n = len(encoded.transactions[ID])
        ts = timestamps_us(tx["ts"])
        known = np.flatnonzero((self.customer >= 0) & (ts != np.iinfo(np.int64).min))
        self.order = known[np.argsort(ts[known], kind="stable")]
        self.sorted_us = ts[self.order]
        self.ts = ts
        self.amount = floats(tx["amount"])
        self.margin = self.amount * margin_rate
        if "margin" in tx:
            given = floats(tx["margin"])
            self.margin = np.where(np.isnan(given), self.margin, given)
        # Any row before a cutoff (refunds too) puts a customer in that snapshot.
        self.first_us = group_min(self.customer[known], self.n, ts[known], np.iinfo(np.int64).max)

    def labels(
        self, cutoff: pd.Timestamp, churn_days: int | None, horizon_days: int | None
    ) -> dict[str, np.ndarray]:
        """`build_labels` at a cutoff for every customer code (meaningless for the absent)."""
        nan = np.full(self.n, np.nan)
        out = dict.fromkeys(LABEL_COLUMNS, nan)
        if churn_days is not None:
            rows = self._window(cutoff, churn_days)
            bought = np.zeros(self.n, dtype=bool)
            bought[self.customer[rows][self.amount[rows] >= 0]] = True
            out["churned"] = np.where(bought, 0.0, 1.0)
        if horizon_days is not None:
            rows = self._window(cutoff, horizon_days)
            who, amount = self.customer[rows], self.amount[rows]
            bought = amount >= 0
            day = self.ts[rows][bought] // US_PER_DAY
            first_day = day.min() if day.size else 0
            buyers, _, _ = pair_counts(who[bought], day - first_day, horizon_days + 2)
            out["future_orders"] = group_sum(buyers, self.n)
            out["future_spend"] = np.maximum(group_sum(who, self.n, amount), 0.0)
            out["future_margin"] = np.maximum(group_sum(who, self.n, self.margin[rows]), 0.0)
        return out

    def _window(self, cutoff: pd.Timestamp, days: int) -> np.ndarray:
        """The rows in [cutoff, cutoff + days), in table order."""
        start = micros(cutoff.to_pydatetime())
        end = micros((cutoff + pd.Timedelta(days=days)).to_pydatetime())
        low, high = np.searchsorted(self.sorted_us, [start, end], side="left")
        inside = np.zeros(self.ts.size, dtype=bool)
        inside[self.order[low:high]] = True
        return np.flatnonzero(inside)


class _Stacked:
    """The stacked columns, filled one snapshot at a time: numbers into arrays made once."""

    def __init__(self, rows: int, feature_dtype: DTypeLike) -> None:
        self.rows, self.dtype, self.filled = rows, np.dtype(feature_dtype), 0
        self.cutoffs: list[tuple[pd.Timestamp, int]] = []
        self.order: list[str] = []
        self.codes: list[np.ndarray] = []
        self.numbers: dict[str, np.ndarray] = {}
        self.categories: dict[str, list[pd.Categorical]] = {}
        self.labels = {name: np.empty(rows) for name in LABEL_COLUMNS}

    def add(
        self,
        cutoff: pd.Timestamp,
        codes: np.ndarray,
        features: dict[str, Any],
        taken: np.ndarray | None,
        labels: dict[str, np.ndarray],
    ) -> None:
        """One snapshot: its customers, feature columns (emptied), rows taken, labels per code.

        `taken` are the rows of the feature columns to keep (None: all of them).
        """
        if not self.cutoffs:
            self.order = list(features)
        elif list(features) != self.order:
            raise RuntimeError(f"the snapshot at {cutoff.date()} has other feature columns")
        at = slice(self.filled, self.filled + len(codes))
        for name in self.order:
            # One column at a time leaves the snapshot's columns: memory holds one copy.
            values = features.pop(name)
            values = values if taken is None else values[taken]
            if name in CATEGORICAL_FEATURES:
                self.categories.setdefault(name, []).append(values)
            else:
                self.numbers.setdefault(name, np.empty(self.rows, self.dtype))[at] = values
        for name, values in labels.items():
            self.labels[name][at] = values[codes]
        self.cutoffs.append((cutoff, len(codes)))
        self.codes.append(codes)
        self.filled = at.stop

    def frame(self, customers: object) -> pd.DataFrame:
        """`as_of`, `customer_id`, the features in `build_features` order, the labels."""
        stamps = np.array([c.to_datetime64() for c, _ in self.cutoffs])
        counts = [n for _, n in self.cutoffs]
        data: dict[str, object] = {
            "as_of": np.repeat(stamps, counts),
            ID: labels(customers, np.concatenate(self.codes)),
        }
        for name in self.order:
            if name in self.numbers:
                data[name] = self.numbers.pop(name)
            else:
                merged = union_categoricals(self.categories.pop(name), sort_categories=True)
                data[name] = merged.remove_unused_categories()
        return pd.DataFrame(data | self.labels, copy=False)
