"""Transaction features as of a date: recency, frequency, monetary value and buying behaviour."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from features.columns import ColumnData, floats
from features.schema import ID

US_PER_DAY = 86_400_000_000
WINDOWS_DAYS = (30, 90, 180, 365)
TREND_DAYS = 90


# Feature blocks are dense: one value per customer code 0..n-1, NaN where undefined. Codes
# index arrays directly, so a per-customer aggregate is one pass (np.bincount, ufunc.at)
# with no hashing, sorting or joining.
Columns = dict[str, Any]


# --- encoding ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codes:
    """A string column as integer codes: `names[codes[i]]` is row i's value, -1 if missing."""

    codes: np.ndarray
    names: pa.Array

    def __len__(self) -> int:
        return len(self.names)


def arrow(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous Arrow array of the values (zero-copy for Arrow-backed pandas strings)."""
    array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def factorize(values: pd.Series | pa.Array, *, sort: bool = False) -> Codes:
    """The values as integer codes, hashing each value once (Arrow's dictionary encoding).

    With `sort`, codes follow the sorted names: ordering by code orders by name, and the
    smallest code is the first name.
    """
    encoded = pc.dictionary_encode(arrow(values))
    names = encoded.dictionary
    # int32 codes: half the memory of int64 for tables of tens of millions of rows.
    codes = encoded.indices.fill_null(-1).to_numpy().astype(np.int32, copy=False)
    if sort and len(names) > 1:
        order = pc.array_sort_indices(names).to_numpy()
        rank = np.empty(order.size + 1, np.int32)
        rank[order] = np.arange(order.size)
        rank[-1] = -1  # code -1 (missing) stays -1
        codes = rank[codes]
        names = names.take(pa.array(order))
    return Codes(codes, names)


def recode(values: Codes, names: pa.Array) -> Codes:
    """The same values as codes into another name list (-1 where absent): one lookup per name."""
    position = pc.index_in(values.names, value_set=names.cast(values.names.type))
    mapping = np.append(position.fill_null(-1).to_numpy().astype(np.int32), np.int32(-1))
    return Codes(mapping[values.codes], names)


def timestamps_us(values: Any) -> np.ndarray:
    """Naive UTC timestamps (a column) as int64 microseconds since the epoch (a view when `us`)."""
    return np.asarray(values, dtype="datetime64[us]").view(np.int64)


def micros(as_of: datetime) -> int:
    """A naive UTC point in time as microseconds since the epoch."""
    return int(np.datetime64(as_of, "us").astype(np.int64))


def days_before(as_of_us: int, ts_us: np.ndarray) -> np.ndarray:
    """Fractional days from each timestamp to `as_of` (positive for times before it)."""
    # Times the reciprocal rather than a division: the rounding the features were defined
    # with (a polars expression), so a day count never moves by one unit in the last place.
    return (as_of_us - ts_us) * (1 / US_PER_DAY)


def rows_before(ts_us: np.ndarray, customer: np.ndarray, as_of_us: int) -> np.ndarray | None:
    """A mask of the rows of known customers before `as_of`, or None when that is every row.

    None lets callers keep zero-copy views of the table's columns in the common case of a
    cutoff after all the data.
    """
    keep = (ts_us < as_of_us) & (customer >= 0) & (ts_us != np.iinfo(np.int64).min)
    return None if keep.all() else keep


def take(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """`values[rows]` (a mask or positions), or `values` itself when rows is None (all)."""
    return values if rows is None else values[rows]


def labels(names: pa.Array, codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """The names that codes index, as a pandas `str` array (missing where the code is -1)."""
    taken = names.take(pa.array(codes, mask=codes < 0))
    return pd.array(taken, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


# --- per-group reductions over integer codes ---------------------------------------------------


def group_sum(groups: np.ndarray, n: int, values: np.ndarray | None = None) -> np.ndarray:
    """Sum (or count, without values) per group code 0..n-1, in row order; 0 for empty groups."""
    return np.bincount(groups, weights=values, minlength=n).astype(np.float64, copy=False)


def group_min(groups: np.ndarray, n: int, values: np.ndarray, empty: float | int) -> np.ndarray:
    """Minimum per group code; `empty` for groups without rows."""
    out = np.full(n, empty, dtype=values.dtype)
    np.minimum.at(out, groups, values)
    return out


def group_max(groups: np.ndarray, n: int, values: np.ndarray, empty: float | int) -> np.ndarray:
    """Maximum per group code; `empty` for groups without rows."""
    out = np.full(n, empty, dtype=values.dtype)
    np.maximum.at(out, groups, values)
    return out


def pair_counts(
    first: np.ndarray, second: np.ndarray, n_second: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (first, second) code pairs in ascending order, with their row counts.

    A dense count table when it is small next to the rows; otherwise one sort of the keys.
    """
    if first.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    span = max(n_second, 1)
    keys = first.astype(np.int64) * span + second
    size = int(keys.max()) + 1
    if size <= 4 * keys.size + 1024:
        counts = np.bincount(keys, minlength=size)
        distinct = np.flatnonzero(counts)
        counts = counts[distinct]
    else:
        keys = np.sort(keys)
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        distinct = keys[starts]
        counts = np.diff(np.r_[starts, keys.size])
    return distinct // span, distinct % span, counts


def ratio(numerator: np.ndarray, denominator: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The quotient where `where` holds, else NaN (and no division warnings)."""
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=where)
    return out


def trend(recent: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """(recent - previous) / (recent + previous): -1 stopped, 0 steady, +1 new; NaN if both 0."""
    total = recent + previous
    return ratio(recent - previous, total, total > 0)


# --- transaction features ----------------------------------------------------------------------


def _optional(frame: ColumnData, column: str, rows: np.ndarray | None) -> np.ndarray | None:
    return take(floats(frame[column]), rows) if column in frame else None


def _line_features(
    frame: ColumnData,
    codes: Mapping[str, Codes],
    rows: np.ndarray | None,
    customer: np.ndarray,
    amount: np.ndarray,
) -> Columns:
    n = len(codes[ID])
    refund = amount < 0
    columns: Columns = {
        "net_spend": group_sum(customer, n, amount),
        "refund_count": group_sum(customer[refund], n),
        "refund_total": group_sum(customer, n, np.where(refund, -amount, 0.0)),
    }
    for name, source in (("margin_total", "margin"), ("discount_total", "discount")):
        values = _optional(frame, source, rows)
        if values is not None:
            # Missing values add nothing, as in SQL.
            columns[name] = group_sum(customer, n, np.where(np.isnan(values), 0.0, values))
    if "category" in codes:
        category = take(codes["category"].codes, rows)
        named = category >= 0
        who, _, _ = pair_counts(customer[named], category[named], len(codes["category"]))
        columns["n_categories"] = group_sum(who, n)
    return columns


def _order_keys(
    order_id: Codes | None, customer: np.ndarray, lines: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each purchase line's order as a code 0..n_orders-1, and each order's customer.

    Lines sharing (customer, order_id) are one order; lines without an order_id are orders
    of their own. An order id normally belongs to one customer, so its code is the key;
    otherwise the (customer, id) pairs are numbered. Codes never depend on thread timing,
    so every sum over them is reproducible.
    """
    if order_id is None:
        return np.arange(customer.size), customer
    key = order_id.codes[lines]
    lone = key < 0
    key[lone] = len(order_id) + np.arange(np.count_nonzero(lone))
    owner = np.zeros(len(order_id) + int(lone.sum()), customer.dtype)
    owner[key] = customer
    if np.array_equal(owner[key], customer):
        return key, owner
    keys = customer.astype(np.int64) * owner.size + key
    order = np.argsort(keys)
    ordered = keys[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]]
    key = np.empty(keys.size, np.int64)
    key[order] = np.cumsum(new) - 1
    return key, ordered[new] // owner.size


def _orders(
    frame: ColumnData,
    codes: Mapping[str, Codes],
    lines: np.ndarray,
    customer: np.ndarray,
    ts: np.ndarray,
    amount: np.ndarray,
) -> Columns:
    """Purchase lines (a mask of the table's rows) collapsed to orders.

    Returns:
        One entry per order: customer, ts (of its first line), amount (summed), and, when the
        table has those columns, `discounted` (a line with a discount > 0) and `channel` (the
        code of its first channel name, -1 if none).
    """
    key, owner = _order_keys(codes.get("order_id"), customer, lines)
    n_keys = owner.size
    first = group_min(key, n_keys, ts, np.iinfo(np.int64).max)
    orders = {"customer": owner, "ts": first, "amount": group_sum(key, n_keys, amount)}
    if "discount" in frame:
        discounted = (floats(frame["discount"]) > 0)[lines]
        orders["discounted"] = group_sum(key[discounted], n_keys) > 0
    if "channel" in codes:
        channel = codes["channel"]
        # A missing channel sorts after every name, so the minimum is a name when there is one.
        none = len(channel)
        line_channel = channel.codes[lines]
        line_channel[line_channel < 0] = none
        smallest = group_min(key, n_keys, line_channel, none)
        orders["channel"] = np.where(smallest == none, -1, smallest)
    used = first != np.iinfo(np.int64).max  # ids whose lines are all refunds or later
    return {name: values[used] for name, values in orders.items()}


def _order_features(orders: Columns, n: int, as_of_us: int) -> Columns:
    customer, ts, amount = orders["customer"], orders["ts"], orders["amount"]
    age = days_before(as_of_us, ts)
    n_orders = group_sum(customer, n)
    latest = ts == group_max(customer, n, ts, np.iinfo(np.int64).min)[customer]
    spend = group_sum(customer, n, amount)
    columns: Columns = {
        "n_orders": n_orders,
        "recency_days": group_min(customer, n, age, np.inf),
        "tenure_days": group_max(customer, n, age, -np.inf),
        "spend_total": spend,
        "spend_mean": ratio(spend, n_orders, n_orders > 0),
        "spend_max": group_max(customer, n, amount, -np.inf),
        # Ties at the same instant take the larger order, so row order never matters.
        "last_order_amount": group_max(customer[latest], n, amount[latest], -np.inf),
    }
    for w in WINDOWS_DAYS:
        columns[f"orders_{w}d"] = group_sum(customer, n, (age < w).astype(np.float64))
    for w in WINDOWS_DAYS:
        columns[f"spend_{w}d"] = group_sum(customer, n, np.where(age < w, amount, 0.0))
    if "discounted" in orders:
        share = group_sum(customer, n, orders["discounted"].astype(np.float64))
        columns["discount_order_share"] = ratio(share, n_orders, n_orders > 0)
    columns.update(_gap_features(customer, ts, n))
    previous = (age >= TREND_DAYS) & (age < 2 * TREND_DAYS)
    orders_prev = group_sum(customer, n, previous.astype(np.float64))
    spend_prev = group_sum(customer, n, np.where(previous, amount, 0.0))
    last, total = columns["last_order_amount"], columns["spend_total"]
    with np.errstate(divide="ignore", invalid="ignore"):
        last_vs_rest = (total - last) / (n_orders - 1)
    columns["orders_trend_90d"] = trend(columns[f"orders_{TREND_DAYS}d"], orders_prev)
    columns["spend_trend_90d"] = trend(columns[f"spend_{TREND_DAYS}d"], spend_prev)
    # The VIP trigger: the latest order against the customer's earlier orders.
    columns["last_order_vs_mean"] = ratio(last, last_vs_rest, (n_orders > 1) & (last_vs_rest > 0))
    gap_mean = columns["gap_mean_days"]
    columns["overdue_ratio"] = ratio(columns["recency_days"], gap_mean, gap_mean > 0)
    # Customers with refunds only have no orders: every order feature is undefined.
    no_orders = n_orders == 0
    for values in columns.values():
        values[no_orders] = np.nan
    return columns


def _gap_features(customer: np.ndarray, ts: np.ndarray, n: int) -> Columns:
    """Purchase days and the gaps between them, from one sort of (customer, day) integer keys."""
    day = ts // US_PER_DAY
    first_day, last_day = (int(day.min()), int(day.max())) if day.size else (0, 0)
    span = last_day - first_day + 1
    keys = customer.astype(np.int64) * span
    keys += day - first_day
    del day
    keys.sort()
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if keys.size else keys
    who, day = np.divmod(keys, span)
    del keys
    same = who[1:] == who[:-1]
    gap = (day[1:] - day[:-1])[same].astype(np.float64)
    gapped = who[1:][same]
    n_days = group_sum(who, n)
    n_gaps = n_days - 1
    mean = ratio(group_sum(gapped, n, gap), n_gaps, n_gaps > 0)
    squares = group_sum(gapped, n, (gap - mean[gapped]) ** 2)
    return {
        "n_purchase_days": n_days,
        "gap_mean_days": mean,
        "gap_std_days": np.sqrt(ratio(squares, n_gaps - 1, n_gaps > 1)),
    }


def _channel_features(orders: Columns, names: pa.Array, n: int) -> Columns:
    """The channel of most of a customer's orders and its share (ties go to the first name)."""
    named = orders["channel"] >= 0
    who, channel, count = pair_counts(
        orders["customer"][named], orders["channel"][named], len(names)
    )
    top = group_max(who, n, count, 0)
    leader = count == top[who]
    none = len(names)
    dominant = group_min(who[leader], n, channel[leader], none)
    return {
        "dominant_channel": labels(names, np.where(dominant == none, -1, dominant)),
        "dominant_channel_share": ratio(top.astype(np.float64), group_sum(who, n, count), top > 0),
    }


def transaction_features(
    transactions: ColumnData, codes: Mapping[str, Codes], as_of: datetime
) -> tuple[Columns, np.ndarray]:
    """RFM and behaviour features of every customer code with a transaction before `as_of`.

    Purchases are rows with amount >= 0, refunds rows with amount < 0. Only rows with
    ts < as_of are read. Windows count back from `as_of`: `orders_30d` covers ts in
    [as_of - 30 days, as_of).

    Args:
        transactions: the validated transactions table.
        codes: its string columns as integer codes: customer_id (rows with -1 are left out;
            the names are the customers, one per code), and order_id, category and channel
            (sorted) when the table has them.
        as_of: the cutoff.

    Returns:
        The columns (one value per customer code) and a mask of the codes with a
        transaction before `as_of` (the others' values are meaningless).

    Output columns (days are fractional; NaN where undefined):
        recency_days: days since the last purchase.
        tenure_days: days since the first purchase.
        n_orders, n_purchase_days: orders (order_id, else rows) and distinct purchase days.
        spend_total, spend_mean, spend_max: purchase value in total, per order, largest order.
        orders_Nd, spend_Nd: orders and spend in the last N = 30/90/180/365 days.
        orders_trend_90d, spend_trend_90d: last 90 days against the 90 before, in [-1, 1].
        gap_mean_days, gap_std_days: mean and std of days between purchase days.
        overdue_ratio: recency_days / gap_mean_days (above 1: later than their own rhythm).
        last_order_amount, last_order_vs_mean: latest order, and against the earlier mean.
        net_spend, refund_count, refund_total: after refunds; number and value of refunds.
        margin_total: gross margin (with a margin column).
        discount_total, discount_order_share: discount granted; share of discounted orders.
        n_categories: distinct categories bought (with a category column).
        dominant_channel, dominant_channel_share: main order channel and its share.
    """
    n = len(codes[ID])
    as_of_us = micros(as_of)
    ts = timestamps_us(transactions["ts"])
    amount = floats(transactions["amount"])
    rows = rows_before(ts, codes[ID].codes, as_of_us)
    customer = take(codes[ID].codes, rows)
    columns = _line_features(transactions, codes, rows, customer, take(amount, rows))
    present = group_sum(customer, n) > 0
    del customer
    # Masks over the table's rows rather than positions: a byte a row instead of eight.
    lines = amount >= 0 if rows is None else rows & (amount >= 0)
    orders = _orders(transactions, codes, lines, codes[ID].codes[lines], ts[lines], amount[lines])
    del ts, amount, lines
    columns.update(_order_features(orders, n, as_of_us))
    if "channel" in codes:
        columns.update(_channel_features(orders, codes["channel"].names, n))
    return columns, present


def rfm_summary(transactions: pl.DataFrame, as_of: datetime) -> pl.LazyFrame:
    """The buy-till-you-die summary per customer, in days, as lifetimes and pymc-marketing name it.

    Output columns:
        frequency: repeat purchase days (distinct purchase days - 1).
        recency: days from the first to the last purchase day.
        T: days from the first purchase day to `as_of`.
        monetary_value: mean spend of the repeat purchase days (0 without any).
    """
    as_of_day = pl.lit(as_of).dt.date()
    days = (
        transactions.lazy()
        .filter((pl.col("ts") < as_of) & (pl.col("amount") >= 0))
        .group_by(ID, pl.col("ts").dt.date().alias("day"))
        .agg(pl.col("amount").sum())
    )
    return days.group_by(ID).agg(
        frequency=(pl.len() - 1).cast(pl.Float64),
        recency=(pl.col("day").max() - pl.col("day").min()).dt.total_days().cast(pl.Float64),
        T=(as_of_day - pl.col("day").min()).dt.total_days().cast(pl.Float64),
        monetary_value=(
            pl.col("amount").sort_by("day").slice(1).mean().fill_null(0.0).cast(pl.Float64)
        ),
    )
