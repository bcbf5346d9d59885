"""The online service's request and response bodies, generated from the contract's table specs.

Built from `features.schema.TABLE_SPECS`, so a column added to the contract is accepted online
without a second list of fields; values are checked where they enter, with the loader's rules
and a request body's limits (docs/online.md, "Request bodies").
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    create_model,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from features.schema import CUSTOMERS, EVENTS, SURVEY_RANGES, TRANSACTIONS, Column, TableSpec
from features.validation import REASON_TIMESTAMP

MAX_CUSTOMERS = 1000
MAX_ROWS = 10_000
MAX_ABS_NUMBER = 1e9
MAX_TEXT = 255
EARLIEST = dt.datetime(1900, 1, 1)
LATEST = dt.datetime(2262, 1, 1)

# Error messages name fields, never values: the values are customer data.
STRICT = ConfigDict(extra="ignore", hide_input_in_errors=True, str_strip_whitespace=True)
_ISO_DATE = re.compile(r"^\s*\d{4}-\d{2}-\d{2}")


class _IsoText:
    """Only ISO 8601 text is a timestamp: pydantic alone would also read numbers as Unix seconds.

    The text is matched before pydantic parses it, inside pydantic-core (a chain of two
    schemas), so it costs no Python call per value; the API documents a date-time string.
    """

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        text = core_schema.custom_error_schema(
            core_schema.str_schema(pattern=_ISO_DATE.pattern),
            custom_error_type="timestamp_parsing",
            custom_error_message=REASON_TIMESTAMP,
        )
        return core_schema.chain_schema([text, handler(source)])

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(core_schema.datetime_schema())


def _naive_utc(value: dt.datetime) -> dt.datetime:
    """Naive UTC, the convention of every loaded table; zoned values are converted."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


# A row's timestamp may keep its zone: `request_tables` converts whole columns to naive UTC.
# pydantic-core compares a zoned value's own clock time with the bounds, which is within a
# day of UTC and well inside pandas' range (1677-2262-04-11) either way.
RowTimestamp = Annotated[dt.datetime, Field(ge=EARLIEST, lt=LATEST), _IsoText()]
Timestamp = Annotated[RowTimestamp, AfterValidator(_naive_utc)]
CustomerId = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=MAX_TEXT, strip_whitespace=True)
]
Text = Annotated[str, StringConstraints(strict=True, max_length=MAX_TEXT, strip_whitespace=True)]


def _annotation(column: Column) -> Any:
    """The pydantic type of one contract column."""
    if column.kind == "timestamp":
        return RowTimestamp
    if column.kind in ("id", "string"):
        if column.required:
            return Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_TEXT)]
        return Text  # empty is missing, as in a CSV file: `request_tables` makes it null
    low = -MAX_ABS_NUMBER if column.min_value is None else column.min_value
    return Annotated[float, Field(strict=True, allow_inf_nan=False, ge=low, le=MAX_ABS_NUMBER)]


def _check_survey(row: Any) -> Any:
    """Survey events need a score within their scale, as in a data folder."""
    scale = SURVEY_RANGES.get(row.event)
    if scale is not None:
        low, high = scale
        if row.value is None or not low <= row.value <= high:
            raise ValueError(f"value: a '{row.event}' event needs a score within {low:g}-{high:g}")
    return row


def row_model(spec: TableSpec, name: str, validators: dict[str, Any] | None = None) -> Any:
    """A pydantic model of one row of a contract table, without its customer_id."""
    fields: dict[str, Any] = {}
    for column in spec.columns:
        if column.name == "customer_id":
            continue
        description = column.description or None
        if column.required:
            fields[column.name] = (_annotation(column), Field(description=description))
        else:
            fields[column.name] = (
                _annotation(column) | None,
                Field(default=None, description=description),
            )
    return create_model(name, __config__=STRICT, __validators__=validators, **fields)


if TYPE_CHECKING:  # generated at run time; the type checker cannot follow their fields
    TransactionRow = Any
    EventRow = Any
    Profile = Any
else:
    TransactionRow = row_model(TRANSACTIONS, "TransactionRow")
    EventRow = row_model(
        EVENTS, "EventRow", {"survey": model_validator(mode="after")(_check_survey)}
    )
    Profile = row_model(CUSTOMERS, "Profile")


class CustomerHistory(BaseModel):
    """One customer's rows. A table left out is absent; an empty list is a table with no rows.

    The difference matters as it does for a data folder: with an events table, a customer
    without events has zero counts; without one, the event features are unknown.
    """

    model_config = STRICT

    customer_id: CustomerId
    transactions: list[TransactionRow] = Field(default_factory=list, max_length=MAX_ROWS)
    events: list[EventRow] | None = Field(default=None, max_length=MAX_ROWS)
    profile: Profile | None = None


class Unscored(BaseModel):
    """A customer of the request who gets no score, and why."""

    customer_id: str
    reason: str


class IgnoredRows(BaseModel):
    """Rows dated at or after as_of: not features (point in time), counted so nothing is silent."""

    transactions: int = 0
    events: int = 0


class ScoreResponse(BaseModel):
    """Scores of one request, all from one model version, all as of one date."""

    model_version: str
    as_of: dt.datetime
    scores: list[dict[str, Any]]
    unscored: list[Unscored] = Field(default_factory=list)
    ignored_rows: IgnoredRows = Field(default_factory=IgnoredRows)


class LookupResponse(BaseModel):
    """The latest nightly scores of the ids found; ids never scored are listed, not errors."""

    scores: list[dict[str, Any]]
    unknown: list[str]
    latest_run: dt.date | None = None


class ModelStatus(BaseModel):
    """What the service serves and how its last look at the registry went."""

    ready: bool
    model_version: str | None
    loaded_at: dt.datetime | None
    last_check: dt.datetime | None
    registry_error: str | None
    store_error: str | None


def duplicate_ids(customers: list[CustomerHistory]) -> list[int]:
    """Positions of customers whose id an earlier customer of the request already has."""
    seen: set[str] = set()
    repeated = []
    for position, customer in enumerate(customers):
        if customer.customer_id in seen:
            repeated.append(position)
        seen.add(customer.customer_id)
    return repeated


# One example: the API's documented default, the start-up check of a new model, the tests'
# request and the README's curl body.
EXAMPLE_REQUEST: dict[str, Any] = {
    "as_of": "2026-11-01",
    "customers": [
        {
            "customer_id": "c1",
            "transactions": [
                {
                    "ts": "2026-03-02T10:15:00Z",
                    "amount": 42.5,
                    "order_id": "o1",
                    "margin": 12.0,
                    "category": "books",
                    "channel": "app",
                },
                {"ts": "2026-06-20", "amount": 18.0, "order_id": "o2", "channel": "web"},
                {"ts": "2026-07-14", "amount": -5.0, "order_id": "o3", "channel": "web"},
            ],
            "events": [
                {"ts": "2026-07-20", "event": "support_ticket"},
                {"ts": "2026-07-25", "event": "nps", "value": 3},
                {"ts": "2026-10-02", "event": "email_open", "channel": "email"},
            ],
            "profile": {"signup_ts": "2025-01-15", "segment": "student", "region": "north"},
        }
    ],
}


def example_customers() -> list[CustomerHistory]:
    """The example request's customers, validated."""
    return [CustomerHistory.model_validate(c) for c in EXAMPLE_REQUEST["customers"]]
