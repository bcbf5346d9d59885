"""Engagement features as of a date: events per type, surveys, support, referrals, late payments."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

import polars as pl

from features.rfm import ID, days_before
from features.schema import SURVEY_RANGES

EVENT_WINDOWS_DAYS = (30, 90)


def event_slug(event: str) -> str:
    """A column-safe name for an event type (open vocabulary: any name may arrive)."""
    return re.sub(r"[^0-9a-z]+", "_", event.strip().lower()).strip("_") or "unnamed"


def event_types_before(events: pl.DataFrame, as_of: datetime) -> list[str]:
    """The event names seen before `as_of`, sorted; later rows must not add columns."""
    names = events.lazy().filter(pl.col("ts") < as_of).select(pl.col("event").unique()).collect()
    return sorted(names["event"].drop_nulls().to_list())


def event_features(
    events: pl.DataFrame, as_of: datetime, event_types: Sequence[str]
) -> pl.LazyFrame:
    """Per-customer engagement from events with ts < as_of, one column set per event type.

    Every type in `event_types` gets its columns even if no customer has it (counts 0), so
    the columns depend only on `event_types`; rows of other types are ignored except in
    `days_since_last_event`.

    Output columns, for each event type E (its slug):
        E_total, E_30d, E_90d: events of that type ever, in the last 30 and 90 days.
        days_since_E: days since the latest one (null if never).
        E_last, E_mean: latest and mean `value`, for the survey types nps, csat and ces.
    And:
        days_since_last_event: days since any event.
        sessions_trend_30d: sessions in the last 30 days against the 30 before, in [-1, 1].
        unresolved_tickets: support tickets not matched by a ticket_resolved (>= 0).
    """
    rows = events.lazy().filter(pl.col("ts") < as_of).with_columns(age=days_before(as_of))
    per_type = (
        rows.filter(pl.col("event").is_in(list(event_types)))
        .group_by(ID, "event")
        .agg(
            total=pl.len(),
            **{f"n{w}": (pl.col("age") < w).sum() for w in EVENT_WINDOWS_DAYS},
            n_prev30=((pl.col("age") >= 30) & (pl.col("age") < 60)).sum(),
            since=pl.col("age").min(),
            # Same-instant surveys are ordered by value so the result never depends on row order.
            value_last=pl.col("value").sort_by(["ts", "value"]).last(),
            value_mean=pl.col("value").mean(),
        )
    )
    aggs: list[pl.Expr] = []
    for event in event_types:
        slug = event_slug(event)
        this = pl.col("event") == event
        aggs.append(pl.col("total").filter(this).sum().cast(pl.Float64).alias(f"{slug}_total"))
        for w in EVENT_WINDOWS_DAYS:
            aggs.append(pl.col(f"n{w}").filter(this).sum().cast(pl.Float64).alias(f"{slug}_{w}d"))
        aggs.append(pl.col("since").filter(this).min().alias(f"days_since_{slug}"))
        if event in SURVEY_RANGES:
            aggs.append(pl.col("value_last").filter(this).first().alias(f"{slug}_last"))
            aggs.append(pl.col("value_mean").filter(this).first().alias(f"{slug}_mean"))
        if event == "session":
            aggs.append(pl.col("n_prev30").filter(this).sum().cast(pl.Float64).alias("_prev30"))
    wide = per_type.group_by(ID).agg(aggs)
    if "session" in event_types:
        recent, previous = pl.col("session_30d"), pl.col("_prev30")
        wide = wide.with_columns(
            sessions_trend_30d=pl.when(recent + previous > 0).then(
                (recent - previous) / (recent + previous)
            )
        ).drop("_prev30")
    if "support_ticket" in event_types and "ticket_resolved" in event_types:
        wide = wide.with_columns(
            unresolved_tickets=(pl.col("support_ticket_total") - pl.col("ticket_resolved_total"))
            .clip(lower_bound=0)
            .cast(pl.Float64)
        )
    last_any = rows.group_by(ID).agg(days_since_last_event=pl.col("age").min())
    return last_any.join(wide, on=ID, how="left")


def views_since_last_purchase(
    events: pl.DataFrame, as_of: datetime, recency: pl.LazyFrame
) -> pl.LazyFrame:
    """Product views after the customer's latest purchase: the "viewed but did not buy" trigger.

    Args:
        events: the events table.
        as_of: the cutoff; only events before it count.
        recency: customer_id and recency_days (days since the latest purchase).

    Returns:
        customer_id and product_views_since_purchase, for customers with such views.
    """
    views = (
        events.lazy()
        .filter((pl.col("ts") < as_of) & (pl.col("event") == "product_view"))
        .with_columns(age=days_before(as_of))
        .join(recency.select(ID, "recency_days"), on=ID, how="inner")
    )
    return views.group_by(ID).agg(
        product_views_since_purchase=(pl.col("age") < pl.col("recency_days")).sum().cast(pl.Float64)
    )
