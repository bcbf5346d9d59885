"""The data contract: the tables Vafa reads, their columns and types, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import pandas as pd

ColumnKind = Literal["id", "string", "timestamp", "float"]

ID = "customer_id"
"""The customer-id column: the key of every table, feature row and score row."""


@dataclass(frozen=True)
class Column:
    """One column of a contract table."""

    name: str
    kind: ColumnKind
    required: bool = False
    min_value: float | None = None
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

TABLE_SPECS: dict[str, TableSpec] = {s.name: s for s in (TRANSACTIONS, CUSTOMERS, EVENTS)}

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
    """A validated data folder: transactions always, customers and events when present.

    Timestamps are naive UTC (`datetime64[us]`), ids and labels are strings, numbers are float64.
    Optional columns absent from the source are absent here too.
    """

    transactions: pd.DataFrame
    customers: pd.DataFrame | None = None
    events: pd.DataFrame | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def before(self, cutoff: pd.Timestamp) -> Tables:
        """The same tables keeping only rows strictly before `cutoff` (profiles are kept whole)."""
        events = self.events
        return replace(
            self,
            transactions=self.transactions[self.transactions["ts"] < cutoff],
            events=None if events is None else events[events["ts"] < cutoff],
        )


def to_timestamp(value: str | pd.Timestamp | object) -> pd.Timestamp:
    """A point in time as a naive UTC timestamp (the convention of every loaded table).

    Raises:
        ValueError: if the value is not a date or date-time.
    """
    ts = pd.Timestamp(value)
    if pd.isna(ts):
        raise ValueError(f"not a date or date-time: {value!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("us")


def default_as_of(tables: Tables) -> pd.Timestamp:
    """The cutoff when none is given: the day after the last transaction, so every row is before it.

    It is also where the observed data ends: a backtest needs its windows to fit before it.
    """
    return to_timestamp(tables.transactions["ts"].max().normalize() + pd.Timedelta(days=1))
