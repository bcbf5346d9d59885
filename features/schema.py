"""The data contract: the tables Vafa reads, their columns and types, in one place."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from typing import Literal

import pandas as pd

ColumnKind = Literal["id", "string", "timestamp", "float", "int", "bool"]
"""How a column is typed once loaded: ids and strings as pandas `str`, timestamps as naive UTC
`datetime64[us]`, floats and ints as float64 (an int is a whole number; NaN is missing), bools
as pandas' nullable `boolean`."""

ID = "customer_id"
"""The customer-id column: the key of every table, feature row and score row."""

MAX_ID_LENGTH = 255
"""The longest customer_id, in characters: the scores store's key column holds no more."""

MAX_ABS_NUMBER = 1e9
"""The largest magnitude of any number of a contract table, in the loader and online alike."""

EARLIEST = pd.Timestamp("1900-01-01")
LATEST = pd.Timestamp("2262-01-01")
"""Timestamps lie in [EARLIEST, LATEST): later ones do not fit pandas' nanosecond range."""

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\S.*)?$")
"""A date or date-time as text: `YYYY-MM-DD`, then optionally a time after `T` or a space."""


@dataclass(frozen=True)
class Column:
    """One column of a contract table.

    Attributes:
        min_value: the smallest number allowed (inclusive unless `min_exclusive`).
        max_value: the largest number allowed (inclusive).
        scheduled: a date known ahead (a term's scheduled end): a future one is normal, not
            flagged as a row dated in the future.
    """

    name: str
    kind: ColumnKind
    required: bool = False
    min_value: float | None = None
    max_value: float | None = None
    min_exclusive: bool = False
    scheduled: bool = False
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    """One contract table: its name, whether a data folder must have it, and its columns."""

    name: str
    required: bool
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        """The contract's column names, in order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """The column called `name`."""
        return next(c for c in self.columns if c.name == name)


TRANSACTIONS = TableSpec(
    name="transactions",
    required=True,
    columns=(
        Column(ID, "id", required=True),
        Column("ts", "timestamp", required=True, description="ISO 8601; naive means UTC"),
        Column("amount", "float", required=True, description="revenue; negative = refund"),
        Column("order_id", "string", description="rows sharing it are one order"),
        Column("margin", "float", description="gross margin of the row"),
        Column("category", "string"),
        Column("discount", "float", min_value=0.0, description="discount granted, >= 0"),
        Column("channel", "string"),
    ),
)

CUSTOMERS = TableSpec(
    name="customers",
    required=False,
    columns=(
        Column(ID, "id", required=True),
        Column("signup_ts", "timestamp"),
        Column("segment", "string"),
        Column("acquisition_channel", "string"),
        Column("region", "string"),
    ),
)

EVENTS = TableSpec(
    name="events",
    required=False,
    columns=(
        Column(ID, "id", required=True),
        Column("ts", "timestamp", required=True),
        Column("event", "string", required=True),
        Column("value", "float"),
        Column("channel", "string"),
    ),
)

SUBSCRIPTIONS = TableSpec(
    name="subscriptions",
    required=False,
    columns=(
        Column(ID, "id", required=True),
        Column("start_ts", "timestamp", required=True, description="start of the term"),
        Column(
            "end_ts",
            "timestamp",
            required=True,
            scheduled=True,
            description="scheduled end of the term (after start_ts), known when it starts",
        ),
        Column("plan", "string", description="plan or product; add-ons are terms of their own"),
        Column("amount", "float", min_value=0.0, description="price of the whole term, >= 0"),
        Column("billing_period_months", "int", min_value=1.0, description="months, >= 1"),
        Column(
            "discount",
            "float",
            min_value=0.0,
            max_value=1.0,
            description="share off the list price, 0-1",
        ),
        Column(
            "quantity",
            "float",
            min_value=0.0,
            min_exclusive=True,
            description="seats, units or users, > 0",
        ),
        Column(
            "cancel_ts",
            "timestamp",
            description="notice given or renewal switched off (not after end_ts)",
        ),
        Column("trial", "bool", description="a trial term"),
    ),
)

TABLE_SPECS: dict[str, TableSpec] = {
    s.name: s for s in (TRANSACTIONS, CUSTOMERS, EVENTS, SUBSCRIPTIONS)
}

# Event names with a meaning of their own; any other name still gets generic features.
KNOWN_EVENTS: tuple[str, ...] = (
    "session",
    "content_view",
    "email_open",
    "email_click",
    "sms_click",
    "push_open",
    "support_ticket",
    "ticket_resolved",
    "complaint",
    "nps",
    "csat",
    "ces",
    "referral",
    "product_view",
    "payment_late",
)

# Survey events whose `value` is a score with a fixed range (inclusive).
SURVEY_RANGES: dict[str, tuple[float, float]] = {
    "nps": (0.0, 10.0),
    "csat": (1.0, 5.0),
    "ces": (1.0, 7.0),
}


@dataclass(frozen=True)
class Tables:
    """A validated data folder: transactions always; customers, events, subscriptions when present.

    Timestamps are naive UTC (`datetime64[us]`), ids and labels are strings, numbers (whole
    ones too) are float64, flags pandas' nullable `boolean`. Optional columns absent from the
    source are absent here too.
    """

    transactions: pd.DataFrame
    customers: pd.DataFrame | None = None
    events: pd.DataFrame | None = None
    subscriptions: pd.DataFrame | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def before(self, cutoff: pd.Timestamp) -> Tables:
        """The same tables as known at `cutoff`: rows strictly before it (profiles kept whole).

        Subscription terms exist once started (`start_ts < cutoff`; their scheduled `end_ts` is
        known from the start) and a notice given at or after `cutoff` is not known yet.
        A table with every row before `cutoff` is not copied (a shallow copy: pandas copies on
        write): at a million customers a copy of the tables is gigabytes.
        """
        events, subscriptions = self.events, self.subscriptions
        return replace(
            self,
            transactions=_rows_before(self.transactions, cutoff),
            events=None if events is None else _rows_before(events, cutoff),
            subscriptions=None if subscriptions is None else terms_known_at(subscriptions, cutoff),
        )


def _rows_before(table: pd.DataFrame, cutoff: pd.Timestamp, column: str = "ts") -> pd.DataFrame:
    before = table[column] < cutoff
    return table.copy(deep=False) if before.all() else table[before]


def terms_known_at(subscriptions: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Subscription terms as known at `cutoff`: started before it, notices from it on unknown."""
    known = _rows_before(subscriptions, cutoff, "start_ts")
    if "cancel_ts" in known.columns and (known["cancel_ts"] >= cutoff).any():
        known = known.copy()
        known.loc[known["cancel_ts"] >= cutoff, "cancel_ts"] = pd.NaT
    return known


def to_timestamp(value: str | pd.Timestamp | object) -> pd.Timestamp:
    """A point in time as a naive UTC timestamp (the convention of every loaded table).

    Text must be ISO 8601 (`2026-11-01`, `2026-11-01T06:00:00Z`): `01/11/2026` is refused
    rather than guessed, as the online service refuses it.

    Raises:
        ValueError: if the value is not a date or date-time, is not ISO 8601 text, or lies
            outside [EARLIEST, LATEST).
    """
    if isinstance(value, str):
        text = value.strip()
        if not ISO_DATE.match(text):
            raise ValueError(
                f"not an ISO 8601 date or date-time: {value!r} "
                "(expected e.g. 2026-11-01 or 2026-11-01T06:00:00Z)"
            )
        try:
            ts = pd.to_datetime(text, format="ISO8601")
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"not a valid ISO 8601 date or date-time: {value!r}") from exc
    else:
        try:
            ts = pd.Timestamp(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"not a date or date-time: {value!r}") from exc
    if pd.isna(ts):
        raise ValueError(f"not a date or date-time: {value!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    if not EARLIEST <= ts < LATEST:
        raise ValueError(
            f"{value!r} is outside the supported range {EARLIEST.date()} to "
            f"{(LATEST - pd.Timedelta(days=1)).date()}"
        )
    return ts.as_unit("us")


def latest_as_of(now: dt.datetime | pd.Timestamp | None = None) -> pd.Timestamp:
    """Tomorrow at 00:00 UTC, by the clock: the latest as-of a command takes without being forced.

    Scores as of a later date would be the newest of the scores store for every night until
    then, so they are refused unless asked for explicitly.

    Args:
        now: the moment to judge from (naive means UTC); the clock when None.
    """
    moment = pd.Timestamp(dt.datetime.now(dt.UTC) if now is None else now)
    if moment.tzinfo is not None:
        moment = moment.tz_convert("UTC").tz_localize(None)
    return (moment.normalize() + pd.Timedelta(days=1)).as_unit("us")


def future_from(now: dt.datetime | pd.Timestamp | None = None) -> pd.Timestamp:
    """The first moment of the day after tomorrow (UTC): rows dated from it on are in the future.

    A day of slack past `latest_as_of` keeps honest rows written in local time (up to 14
    hours ahead of UTC) out of it.
    """
    return latest_as_of(now) + pd.Timedelta(days=1)


def default_as_of(tables: Tables, now: dt.datetime | pd.Timestamp | None = None) -> pd.Timestamp:
    """The cutoff when none is given: the day after the last transaction, so every row is before it.

    Transactions dated after tomorrow (`future_from`) do not count, and the cutoff is never
    later than tomorrow (`latest_as_of`): one row dated 2062 must not make the as-of 2062. It is
    also where the observed data ends: a backtest needs its windows to fit before it.

    Args:
        tables: the loaded tables; only transactions are read.
        now: the moment to judge "tomorrow" from; the clock when None.

    Raises:
        ValueError: no transaction is dated before the day after tomorrow.
    """
    ts = tables.transactions["ts"]
    last = ts[ts < future_from(now)].max()
    if pd.isna(last):
        raise ValueError("no transaction dated up to tomorrow: no default as-of")
    day_after = last.normalize() + pd.Timedelta(days=1)
    return to_timestamp(min(day_after, latest_as_of(now)))
