"""A request's rows as the contract tables the batch's feature code reads, and its scores.

Online and batch cannot drift apart: a request becomes the columns a data folder of its rows
would load to, and goes through the batch's `feature_columns` and `Scorer`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.build import feature_columns
from features.rfm import Columns
from features.schema import (
    CUSTOMERS,
    EVENTS,
    SUBSCRIPTIONS,
    TRANSACTIONS,
    TableSpec,
    latest_as_of,
)
from serving.online.responses import (
    IgnoredRows,
    ScoreResponse,
    Unscored,
    utc,
    utc_text,
    zoned,
)
from serving.online.schema import CustomerHistory
from serving.store.rows import score_records

if TYPE_CHECKING:
    from serving.online.champion import Champion

NO_TRANSACTION = "no transaction before as_of"


def clock_as_of(now: dt.datetime | None = None) -> pd.Timestamp:
    """`/score`'s as-of when none is given: tomorrow 00:00 UTC, so everything up to now counts.

    `features.schema.latest_as_of`, the latest as-of the batch takes. The batch's default, the
    day after the data's last transaction, is that same day for a nightly feed that runs
    through today; applied to one customer's rows it would score them as of their own last
    purchase (recency zero), which no CRM user means.
    """
    return latest_as_of(now)


def _columns(spec: TableSpec, rows: list[Any]) -> list[str]:
    """The table's columns as a file of these rows would have them: any row giving a field."""
    given: set[str] = set().union(*(row.__pydantic_fields_set__ for row in rows))
    return [c.name for c in spec.columns if c.name != "customer_id" and c.name in given]


_MICROSECONDS = pa.timestamp("us")


def _table(spec: TableSpec, ids: list[str], rows: list[Any], columns: list[str]) -> Columns:
    """A table as the loader types it: Arrow text, naive UTC datetime64[us], float64, booleans.

    Whole numbers are float64 and flags pandas `boolean`, as loaded. The loader's conversions
    happen here, a column at a time, rather than per value while validating: zoned timestamps
    become naive UTC (Arrow converts zoned datetimes to UTC), and empty text is missing, as in
    a CSV file.
    """
    data: Columns = {"customer_id": pa.array(ids, pa.string())}
    for name in dict.fromkeys(columns):
        column = spec.column(name)
        values = [getattr(row, name) for row in rows]
        if column.kind == "timestamp":
            data[name] = pa.array(values, _MICROSECONDS).to_numpy(zero_copy_only=False)
        elif column.kind in ("float", "int"):
            data[name] = np.array(values, dtype=np.float64)
        elif column.kind == "bool":
            data[name] = pd.array(values, dtype="boolean")
        else:
            text = pa.array(values, pa.string())
            data[name] = text if column.required else pc.if_else(pc.equal(text, ""), None, text)
    return data


@dataclass(frozen=True)
class RequestShape:
    """Which tables and columns a request sends: what a data folder of its rows would hold.

    A table is present when any customer sends it (`events: []` is an events table without
    rows for that customer; leaving `events` out is no events table), and a column when any
    row gives it. Only requests alike are scored together, and a large request scored in
    parts keeps the shape of the whole.
    """

    transactions: tuple[str, ...]
    has_events: bool
    events: tuple[str, ...]
    has_profiles: bool
    profiles: tuple[str, ...]
    has_subscriptions: bool = False
    subscriptions: tuple[str, ...] = ()


def request_shape(customers: list[CustomerHistory]) -> RequestShape:
    """The tables and columns of a request's rows."""
    tx = [r for c in customers for r in c.transactions]
    ev = [r for c in customers if "events" in c.model_fields_set for r in c.events or []]
    profiles = [c.profile for c in customers if c.profile is not None]
    terms = [
        r for c in customers if "subscriptions" in c.model_fields_set for r in c.subscriptions or []
    ]
    return RequestShape(
        transactions=tuple(_columns(TRANSACTIONS, tx)),
        has_events=any("events" in c.model_fields_set for c in customers),
        events=tuple(_columns(EVENTS, ev)),
        has_profiles=any("profile" in c.model_fields_set for c in customers),
        profiles=tuple(_columns(CUSTOMERS, profiles)),
        has_subscriptions=any("subscriptions" in c.model_fields_set for c in customers),
        subscriptions=tuple(_columns(SUBSCRIPTIONS, terms)),
    )


@dataclass(frozen=True)
class RequestTables:
    """A request's contract tables as dicts of arrays: what `feature_columns` reads online."""

    transactions: Columns
    events: Columns | None = None
    customers: Columns | None = None
    subscriptions: Columns | None = None


def request_tables(
    customers: list[CustomerHistory], keys: list[str], shape: RequestShape | None = None
) -> RequestTables:
    """The contract tables of customers, each under its key (ids stay out of the features).

    The tables and columns are `shape`'s (by default, those of these customers' rows, see
    `RequestShape`). Rows stay in the order of `customers`.
    """
    shape = shape or request_shape(customers)
    tx_ids, tx_rows, ev_ids, ev_rows, profile_ids, profiles = [], [], [], [], [], []
    term_ids: list[str] = []
    terms: list[Any] = []
    for key, customer in zip(keys, customers, strict=True):
        tx_ids += [key] * len(customer.transactions)
        tx_rows += customer.transactions
        events = customer.events or []
        ev_ids += [key] * len(events)
        ev_rows += events
        if customer.profile is not None:
            profile_ids.append(key)
            profiles.append(customer.profile)
        subscriptions = customer.subscriptions or []
        term_ids += [key] * len(subscriptions)
        terms += subscriptions
    return RequestTables(
        transactions=_table(TRANSACTIONS, tx_ids, tx_rows, ["ts", "amount", *shape.transactions]),
        events=_table(EVENTS, ev_ids, ev_rows, ["ts", "event", *shape.events])
        if shape.has_events
        else None,
        customers=_table(CUSTOMERS, profile_ids, profiles, list(shape.profiles))
        if shape.has_profiles
        else None,
        subscriptions=_table(
            SUBSCRIPTIONS, term_ids, terms, ["start_ts", "end_ts", *shape.subscriptions]
        )
        if shape.has_subscriptions
        else None,
    )


def later_rows(table: Columns | None, as_of: pd.Timestamp, sizes: list[int]) -> list[int]:
    """Per request, its rows of `table` dated at or after `as_of`; `sizes`: its rows in order."""
    if table is None:
        return [0] * len(sizes)
    later = np.concatenate(([0], np.cumsum(table["ts"] >= as_of.to_datetime64())))
    ends = np.cumsum(sizes)
    return (later[ends] - later[ends - sizes]).tolist()


def score_customers(
    champion: Champion, customers: list[CustomerHistory], as_of: pd.Timestamp
) -> ScoreResponse:
    """Features with the batch's code, scores with the batch's scorer, for one request."""
    return score_requests(champion, [customers], as_of)[0]


def score_requests(
    champion: Champion,
    requests: list[list[CustomerHistory]],
    as_of: pd.Timestamp,
    shape: RequestShape | None = None,
) -> list[ScoreResponse]:
    """Several requests alike (same as_of, tables and columns) in one features and score call.

    Customers are keyed by request and position, so two requests may send the same id with
    different histories, and no customer id reaches the feature code. `shape`: the tables and
    columns to build (by default those of these requests' rows; a part of a large request
    passes the whole request's). Every row carries the as-of of the answer, in UTC.
    """
    keys = [[f"{r:05d}:{i:05d}" for i in range(len(c))] for r, c in enumerate(requests)]
    tables = request_tables(
        [c for customers in requests for c in customers], [k for ks in keys for k in ks], shape
    )
    later_transactions = later_rows(
        tables.transactions, as_of, [sum(len(c.transactions) for c in r) for r in requests]
    )
    later_events = later_rows(
        tables.events, as_of, [sum(len(c.events or []) for c in r) for r in requests]
    )
    scorer = champion.scorer
    # The batch's feature and scoring code on a dict of columns: for a few customers a
    # DataFrame's cost per column would be most of the request.
    features = feature_columns(tables, as_of, event_types=scorer.bundle.spec.event_types or None)
    n = len(features["customer_id"])
    rows: dict[str, dict[str, Any]] = {}
    if n:
        # The batch's defaults, reasons included, so a /score row and its /lookup row agree,
        # in the scores store's encoding: ISO dates, NaN as null.
        scored = scorer.score_columns(features, n, as_of)
        rows = {record["customer_id"]: record for record in score_records(scored)}
    moment = as_of.to_pydatetime()
    as_of_text = utc_text(moment)  # one as-of for the answer and its rows
    responses = []
    for customers, request_keys, transactions, events in zip(
        requests, keys, later_transactions, later_events, strict=True
    ):
        scores, unscored = [], []
        for customer, key in zip(customers, request_keys, strict=True):
            if key in rows:
                row = rows[key]
                row["customer_id"], row["as_of"] = customer.customer_id, as_of_text
                if "expected_next_order" in row:
                    row["expected_next_order"] = zoned(row["expected_next_order"])
                scores.append(row)
            else:
                unscored.append(Unscored(customer_id=customer.customer_id, reason=NO_TRANSACTION))
        responses.append(
            ScoreResponse(
                model_version=champion.version,
                as_of=utc(moment),
                scores=scores,
                unscored=unscored,
                ignored_rows=IgnoredRows(transactions=transactions, events=events),
            )
        )
    return responses
