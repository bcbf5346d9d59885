"""Transaction features as of a date: recency, frequency, monetary value and buying behaviour."""

from __future__ import annotations

from datetime import datetime

import polars as pl

US_PER_DAY = 86_400_000_000
WINDOWS_DAYS = (30, 90, 180, 365)
TREND_DAYS = 90

ID = "customer_id"


def days_before(as_of: datetime, column: str = "ts") -> pl.Expr:
    """Fractional days from `column` to `as_of` (positive for rows before `as_of`)."""
    return (pl.lit(as_of) - pl.col(column)).dt.total_microseconds() / US_PER_DAY


def _trend(recent: str, previous: str) -> pl.Expr:
    """(recent - previous) / (recent + previous): -1 stopped, 0 steady, +1 new; null if both 0."""
    total = pl.col(recent) + pl.col(previous)
    return pl.when(total > 0).then((pl.col(recent) - pl.col(previous)) / total)


def _orders(purchases: pl.LazyFrame, columns: set[str]) -> pl.LazyFrame:
    """Purchase lines collapsed to orders: one row per order with its time, value and flags.

    Lines without an order_id are orders of their own.
    """
    keys = [ID]
    if "order_id" in columns:
        # A null order_id must not merge unrelated lines into one order: key it by row instead.
        purchases = purchases.with_columns(
            _line=pl.when(pl.col("order_id").is_null()).then(pl.col("_row"))
        )
        keys += ["order_id", "_line"]
    else:
        keys += ["_row"]
    aggs = [pl.col("ts").min(), pl.col("age").max(), pl.col("amount").sum()]
    if "discount" in columns:
        aggs.append((pl.col("discount") > 0).any().alias("discounted"))
    if "channel" in columns:
        aggs.append(pl.col("channel").min())
    return purchases.group_by(keys).agg(aggs)


def _in(condition: pl.Expr, value: pl.Expr | float = 1.0) -> pl.Expr:
    """`value` where `condition` holds, else 0: its sum is a conditional sum on the fast path."""
    return pl.when(condition).then(value).otherwise(0.0)


def _order_features(orders: pl.LazyFrame, columns: set[str]) -> pl.LazyFrame:
    age, amount = pl.col("age"), pl.col("amount")
    previous = (age >= TREND_DAYS) & (age < 2 * TREND_DAYS)
    aggs = [
        pl.len().cast(pl.Float64).alias("n_orders"),
        age.min().alias("recency_days"),
        age.max().alias("tenure_days"),
        amount.sum().alias("spend_total"),
        amount.mean().alias("spend_mean"),
        amount.max().alias("spend_max"),
        # Ties at the same instant take the larger order, so row order never matters.
        pl.when(pl.col("_latest")).then(amount).max().alias("last_order_amount"),
        *(_in(age < w).sum().alias(f"orders_{w}d") for w in WINDOWS_DAYS),
        *(_in(age < w, amount).sum().alias(f"spend_{w}d") for w in WINDOWS_DAYS),
        _in(previous).sum().alias("_orders_prev"),
        _in(previous, amount).sum().alias("_spend_prev"),
    ]
    if "discount" in columns:
        aggs.append(pl.col("discounted").cast(pl.Float64).mean().alias("discount_order_share"))
    last_vs_rest = (pl.col("spend_total") - pl.col("last_order_amount")) / (pl.col("n_orders") - 1)
    return (
        orders.with_columns(_latest=pl.col("ts") == pl.col("ts").max().over(ID))
        .group_by(ID)
        .agg(aggs)
        .join(_gap_features(orders), on=ID, how="left")
        .with_columns(
            orders_trend_90d=_trend(f"orders_{TREND_DAYS}d", "_orders_prev"),
            spend_trend_90d=_trend(f"spend_{TREND_DAYS}d", "_spend_prev"),
            # The VIP trigger: the latest order against the customer's earlier orders.
            last_order_vs_mean=pl.when((pl.col("n_orders") > 1) & (last_vs_rest > 0)).then(
                pl.col("last_order_amount") / last_vs_rest
            ),
        )
        .with_columns(
            overdue_ratio=pl.when(pl.col("gap_mean_days") > 0).then(
                pl.col("recency_days") / pl.col("gap_mean_days")
            )
        )
        .drop("_orders_prev", "_spend_prev")
    )


def _gap_features(orders: pl.LazyFrame) -> pl.LazyFrame:
    """Purchase days and the gaps between them, from one sort of (customer, day) integer keys."""
    day = pl.col("ts").dt.date().cast(pl.Int64)
    # Days since 1970 fit in 20 bits until the year 4840; the customer code takes the rest.
    days = orders.select((pl.col(ID).cast(pl.Int64) * (1 << 20) + day).unique().sort().alias("k"))
    gaps = days.with_columns(
        (pl.col("k") // (1 << 20)).cast(pl.UInt32).alias(ID), day=pl.col("k") % (1 << 20)
    ).with_columns(
        gap=pl.when(pl.col(ID) == pl.col(ID).shift()).then(pl.col("day") - pl.col("day").shift())
    )
    return gaps.group_by(ID).agg(
        n_purchase_days=pl.len().cast(pl.Float64),
        gap_mean_days=pl.col("gap").mean().cast(pl.Float64),
        gap_std_days=pl.col("gap").std().cast(pl.Float64),
    )


def _line_features(lines: pl.LazyFrame, columns: set[str]) -> pl.LazyFrame:
    refund = pl.col("amount") < 0
    aggs = [
        pl.col("amount").sum().alias("net_spend"),
        _in(refund).sum().alias("refund_count"),
        _in(refund, -pl.col("amount")).sum().alias("refund_total"),
    ]
    if "margin" in columns:
        aggs.append(pl.col("margin").sum().alias("margin_total"))
    if "discount" in columns:
        aggs.append(pl.col("discount").sum().alias("discount_total"))
    if "category" in columns:
        aggs.append(
            pl.col("category").drop_nulls().n_unique().cast(pl.Float64).alias("n_categories")
        )
    return lines.group_by(ID).agg(aggs)


def _channel_features(orders: pl.LazyFrame) -> pl.LazyFrame:
    """The channel of most of a customer's orders and its share (ties go to the first name)."""
    counts = (
        orders.filter(pl.col("channel").is_not_null())
        .group_by(ID, "channel")
        .agg(n=pl.len())
        .with_columns(_top=pl.col("n") == pl.col("n").max().over(ID))
    )
    return counts.group_by(ID).agg(
        dominant_channel=pl.when(pl.col("_top")).then(pl.col("channel")).min(),
        dominant_channel_share=pl.col("n").max() / pl.col("n").sum(),
    )


def transaction_features(transactions: pl.DataFrame, as_of: datetime) -> pl.LazyFrame:
    """RFM and behaviour features of every customer with a transaction before `as_of`.

    Purchases are rows with amount >= 0, refunds rows with amount < 0. Only rows with
    ts < as_of are read. Windows count back from `as_of`: `orders_30d` covers ts in
    [as_of - 30 days, as_of).

    Output columns (days are fractional; null where undefined):
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
    columns = set(transactions.columns)
    lines = (
        transactions.lazy()
        .with_row_index("_row")
        .filter(pl.col("ts") < as_of)
        .with_columns(age=days_before(as_of))
    )
    orders = _orders(lines.filter(pl.col("amount") >= 0), columns)
    result = _line_features(lines, columns).join(
        _order_features(orders, columns), on=ID, how="left"
    )
    if "channel" in columns:
        result = result.join(_channel_features(orders), on=ID, how="left")
    return result


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
