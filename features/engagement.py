"""Engagement features as of a date: events per type, surveys, support, referrals, late payments."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
import pyarrow as pa

from features.columns import ColumnData, floats
from features.rfm import (
    ID,
    Codes,
    Columns,
    days_before,
    factorize,
    group_min,
    group_sum,
    micros,
    ratio,
    rows_before,
    take,
    timestamps_us,
    trend,
)
from features.schema import SURVEY_RANGES

EVENT_WINDOWS_DAYS = (30, 90)


def event_slug(event: str) -> str:
    """A column-safe name for an event type (open vocabulary: any name may arrive)."""
    return re.sub(r"[^0-9a-z]+", "_", event.strip().lower()).strip("_") or "unnamed"


def event_types_before(events: ColumnData, as_of: datetime) -> list[str]:
    """The event names seen before `as_of`, sorted; later rows must not add columns."""
    return names_before(factorize(events["event"]), timestamps_us(events["ts"]), micros(as_of))


def names_before(event: Codes, ts_us: np.ndarray, as_of_us: int) -> list[str]:
    """The sorted names of the coded rows with a time before `as_of`."""
    codes = event.codes[(ts_us < as_of_us) & (event.codes >= 0)]
    seen = np.bincount(codes, minlength=len(event)) > 0
    return sorted(event.names.filter(pa.array(seen)).to_pylist())


def _type_codes(event: Codes, event_types: Sequence[str]) -> np.ndarray:
    """Each row's position in `event_types`, -1 for other names (one lookup per name)."""
    position = {name: i for i, name in enumerate(event_types)}
    mapping = [position.get(name, -1) for name in event.names.to_pylist()]
    return np.array([*mapping, -1], dtype=np.int32)[event.codes]


def _last_value(key: np.ndarray, ts: np.ndarray, value: np.ndarray, n: int) -> np.ndarray:
    """Per key the value of the latest row; same-instant rows are ordered by value.

    Missing values sort before any value, so a later missing score reads as missing.
    """
    known = ~np.isnan(value)
    order = np.lexsort((np.where(known, value, 0.0), known, ts, key))
    key, value = key[order], value[order]
    last = np.flatnonzero(np.r_[key[1:] != key[:-1], True]) if key.size else key
    out = np.full(n, np.nan)
    out[key[last]] = value[last]
    return out


def event_features(
    events: ColumnData, codes: Mapping[str, Codes], as_of: datetime, event_types: Sequence[str]
) -> Columns:
    """Per-customer engagement from events with ts < as_of, one column set per event type.

    Every type in `event_types` gets its columns even if no customer has it (counts 0), so
    the columns depend only on `event_types`; rows of other types are ignored except in
    `days_since_last_event`.

    Args:
        events: the validated events table.
        codes: its customer_id (rows with -1 are left out; the names are the customers, one
            per code) and event columns as integer codes.
        as_of: the cutoff.
        event_types: the event names that get columns.

    Returns:
        One value per customer code for each output column.

    Output columns, for each event type E (its slug):
        E_total, E_30d, E_90d: events of that type ever, in the last 30 and 90 days.
        days_since_E: days since the latest one (NaN if never).
        E_last, E_mean: latest and mean `value`, for the survey types nps, csat and ces.
    And:
        days_since_last_event: days since any event.
        sessions_trend_30d: sessions in the last 30 days against the 30 before, in [-1, 1].
        unresolved_tickets: support tickets not matched by a ticket_resolved (>= 0).

    Raises:
        ValueError: two event types share a column name.
    """
    slugs = [event_slug(e) for e in event_types]
    if len(set(slugs)) < len(slugs):
        raise ValueError(f"event types with the same column name: {sorted(event_types)}")
    n = len(codes[ID])
    as_of_us = micros(as_of)
    ts = timestamps_us(events["ts"])
    rows = rows_before(ts, codes[ID].codes, as_of_us)
    ts, who = take(ts, rows), take(codes[ID].codes, rows)
    age = days_before(as_of_us, ts)
    columns: Columns = {"days_since_last_event": _nan_if_inf(group_min(who, n, age, np.inf))}
    kind = take(_type_codes(codes["event"], event_types), rows)
    value = take(floats(events["value"]), rows) if "value" in events else None
    for i, (event, slug) in enumerate(zip(event_types, slugs, strict=True)):
        # One event type at a time: its per-customer arrays stay small enough for the cache.
        mine = np.flatnonzero(kind == i)
        whom, since = who[mine], age[mine]
        columns[f"{slug}_total"] = group_sum(whom, n)
        for w in EVENT_WINDOWS_DAYS:
            columns[f"{slug}_{w}d"] = group_sum(whom[since < w], n)
        columns[f"days_since_{slug}"] = _nan_if_inf(group_min(whom, n, since, np.inf))
        if event in SURVEY_RANGES:
            score = value[mine] if value is not None else np.full(mine.size, np.nan)
            scored = ~np.isnan(score)
            columns[f"{slug}_last"] = _last_value(whom, ts[mine], score, n)
            count = group_sum(whom[scored], n)
            total = group_sum(whom[scored], n, score[scored])
            columns[f"{slug}_mean"] = ratio(total, count, count > 0)
        if event == "session":
            previous = group_sum(whom[(since >= 30) & (since < 60)], n)
            sessions_trend = trend(columns[f"{slug}_30d"], previous)
    if "session" in event_types:
        columns["sessions_trend_30d"] = sessions_trend
    if "support_ticket" in event_types and "ticket_resolved" in event_types:
        tickets = columns[f"{event_slug('support_ticket')}_total"]
        resolved = columns[f"{event_slug('ticket_resolved')}_total"]
        columns["unresolved_tickets"] = np.clip(tickets - resolved, 0.0, None)
    return columns


def views_since_last_purchase(
    events: ColumnData, codes: Mapping[str, Codes], as_of: datetime, recency: np.ndarray
) -> np.ndarray:
    """Product views after the customer's latest purchase: the "viewed but did not buy" trigger.

    Args:
        events: the events table.
        codes: its customer_id and event columns as integer codes (see `event_features`).
        as_of: the cutoff; only events before it count.
        recency: days since each customer code's latest purchase (NaN: none).

    Returns:
        product_views_since_purchase, one value per customer code.
    """
    as_of_us = micros(as_of)
    ts = timestamps_us(events["ts"])
    who = codes[ID].codes
    views = np.flatnonzero(
        (_type_codes(codes["event"], ["product_view"]) == 0) & (ts < as_of_us) & (who >= 0)
    )
    who = who[views]
    return group_sum(who[days_before(as_of_us, ts[views]) < recency[who]], len(codes[ID]))


def _nan_if_inf(values: np.ndarray) -> np.ndarray:
    values[np.isinf(values)] = np.nan
    return values
