"""The online service's request bodies, generated from the contract's table specs.

Built from `features.schema.TABLE_SPECS`, so a column added to the contract is accepted online
without a second list of fields; values are checked where they enter, with the loader's rules
and a request body's limits (docs/online.md, "Request bodies"). Unknown fields are refused at
every level, naming them: a misspelled optional column must not vanish silently. A large
`/score` body is checked in slices, letting other requests through in between.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import (
    ErrorDetails,
    InitErrorDetails,
    PydanticCustomError,
    core_schema,
    from_json,
)

from features.schema import (
    CUSTOMERS,
    EARLIEST,
    EVENTS,
    LATEST,
    MAX_ABS_NUMBER,
    MAX_ID_LENGTH,
    SUBSCRIPTIONS,
    SURVEY_RANGES,
    TRANSACTIONS,
    Column,
    TableSpec,
)
from features.validation import (
    REASON_CANCEL_AFTER_END,
    REASON_END_NOT_AFTER_START,
    REASON_OVERLAP,
    REASON_TIMESTAMP,
)

MAX_CUSTOMERS = 1000
MAX_ROWS = 10_000
MAX_TEXT = 255
# A body up to this size is checked at once; a larger one in slices of about `SLICE_ROWS` rows,
# the event loop free between two (docs/online.md, "Request bodies").
INLINE_BYTES = 128 * 1024
SLICE_ROWS = 2000

# Error messages name fields, never values: the values are customer data.
STRICT = ConfigDict(extra="forbid", hide_input_in_errors=True, str_strip_whitespace=True)
_ISO_DATE = re.compile(r"^\s*\d{4}-\d{2}-\d{2}")
_NO_NUL = r"^[^\x00]*$"  # as the loader: the scores store cannot hold a NUL in an id


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
RowTimestamp = Annotated[
    dt.datetime,
    Field(ge=EARLIEST.to_pydatetime(), lt=LATEST.to_pydatetime()),
    _IsoText(),
]
Timestamp = Annotated[RowTimestamp, AfterValidator(_naive_utc)]
CustomerId = Annotated[
    str,
    StringConstraints(
        strict=True,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        strip_whitespace=True,
        pattern=_NO_NUL,
    ),
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
    if column.kind == "bool":
        return Annotated[bool, Field(strict=True)]  # JSON true/false only
    low = -MAX_ABS_NUMBER if column.min_value is None else column.min_value
    high = MAX_ABS_NUMBER if column.max_value is None else column.max_value
    return Annotated[
        float,
        Field(
            strict=True,
            allow_inf_nan=False,
            gt=low if column.min_exclusive else None,
            ge=None if column.min_exclusive else low,
            le=high,
            multiple_of=1 if column.kind == "int" else None,  # whole numbers, as the loader
        ),
    ]


def _check_survey(row: Any) -> Any:
    """Survey events need a score within their scale, as in a data folder."""
    scale = SURVEY_RANGES.get(row.event)
    if scale is not None:
        low, high = scale
        if row.value is None or not low <= row.value <= high:
            raise ValueError(f"value: a '{row.event}' event needs a score within {low:g}-{high:g}")
    return row


def _check_term(row: Any) -> Any:
    """A term ends after it starts and takes notice no later than its end, as in a data folder."""
    start, end = _naive_utc(row.start_ts), _naive_utc(row.end_ts)
    if end <= start:
        raise ValueError(REASON_END_NOT_AFTER_START)
    if row.cancel_ts is not None and _naive_utc(row.cancel_ts) > end:
        raise ValueError(REASON_CANCEL_AFTER_END)
    return row


def _check_overlaps(subscriptions: list[Any] | None) -> None:
    """No two terms of one plan overlap (a renewal starts as the last term ends), as the loader."""
    terms: dict[str, list[tuple[dt.datetime, dt.datetime, int]]] = {}
    for position, row in enumerate(subscriptions or ()):
        start, end = _naive_utc(row.start_ts), _naive_utc(row.end_ts)
        terms.setdefault(row.plan or "", []).append((start, end, position))
    for plan_terms in terms.values():
        plan_terms.sort()
        latest: tuple[dt.datetime, int] | None = None
        for start, end, position in plan_terms:
            if latest is not None and start < latest[0]:
                raise ValueError(f"subscriptions {latest[1]} and {position}: {REASON_OVERLAP}")
            if latest is None or end > latest[0]:
                latest = (end, position)


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
    SubscriptionRow = Any
else:
    TransactionRow = row_model(TRANSACTIONS, "TransactionRow")
    EventRow = row_model(
        EVENTS, "EventRow", {"survey": model_validator(mode="after")(_check_survey)}
    )
    Profile = row_model(CUSTOMERS, "Profile")
    SubscriptionRow = row_model(
        SUBSCRIPTIONS, "SubscriptionRow", {"term": model_validator(mode="after")(_check_term)}
    )


class CustomerHistory(BaseModel):
    """One customer's rows. A table left out is absent; an empty list is a table with no rows.

    The difference matters as it does for a data folder: with an events table, a customer
    without events has zero counts; without one, the event features are unknown. The same
    holds for `subscriptions` (one row per term, contract section 1).
    """

    model_config = STRICT

    customer_id: CustomerId
    transactions: list[TransactionRow] = Field(default_factory=list, max_length=MAX_ROWS)
    events: list[EventRow] | None = Field(default=None, max_length=MAX_ROWS)
    profile: Profile | None = None
    subscriptions: list[SubscriptionRow] | None = Field(default=None, max_length=MAX_ROWS)

    @model_validator(mode="after")
    def terms_do_not_overlap(self) -> Self:
        """Two terms of one plan must not overlap, as in a data folder."""
        _check_overlaps(self.subscriptions)
        return self


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


Customers = Annotated[
    list[CustomerHistory],
    Field(
        min_length=1,
        max_length=MAX_CUSTOMERS,
        description="Each customer with their own rows (contract section 1, no customer_id).",
        examples=[EXAMPLE_REQUEST["customers"]],
    ),
]
AsOf = Annotated[
    Timestamp | None,
    Field(
        description="Score as of this moment: rows at or after it are ignored (and counted). "
        "A date means 00:00 UTC; a zoned date-time is converted to UTC. Default: tomorrow "
        "00:00 UTC by the server's clock, so everything up to now counts (the answer's "
        "`as_of_from` says which was used).",
        examples=[EXAMPLE_REQUEST["as_of"]],
    ),
]
CustomerIds = Annotated[
    list[CustomerId], Field(min_length=1, max_length=MAX_CUSTOMERS, examples=[["c1", "c2"]])
]


def explained(exc: ValidationError) -> ValidationError:
    """The same errors, unknown fields named in words, for a client to read.

    Each error keeps its type and location; pydantic's "Extra inputs are not permitted"
    becomes "unknown field 'amout'". No value is quoted.
    """
    return _errors(exc.errors(include_url=False))


def _errors(errors: list[ErrorDetails]) -> ValidationError:
    details: list[InitErrorDetails] = []
    for error in errors:
        loc = error["loc"]
        message = error["msg"]
        if error["type"] == "extra_forbidden" and loc:
            message = f"unknown field {str(loc[-1])!r}: not a field of this object (misspelled?)"
        details.append(
            {
                "type": PydanticCustomError(error["type"], "{message}", {"message": message}),
                "loc": loc,
                "input": None,
            }
        )
    return ValidationError.from_exception_data("request body", details, hide_input=True)


class _Body(BaseModel):
    """A request body: refused with every problem named, unknown fields included."""

    model_config = STRICT

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        """Validate the JSON body; errors come out `explained`."""
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as exc:
            raise explained(exc) from None


class ScoreRequest(_Body):
    """`/score`: customers with their own rows, and the moment to score them as of."""

    customers: Customers
    as_of: AsOf = None


class LargeBody(NamedTuple):
    """A `/score` body too large to check at once: `checked_in_slices` checks it."""

    body: bytes


class ScoreInput(ScoreRequest):
    """`/score`'s body as BentoML reads it: a large body is left for `checked_in_slices`.

    Checking a large body at once would hold every other request for as long.
    """

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        """The body checked now, or for a large one, held as it came."""
        if len(json_data) <= INLINE_BYTES:
            return super().model_validate_json(json_data, **kwargs)
        data = json_data.encode() if isinstance(json_data, str) else bytes(json_data)
        return cls.model_construct(customers=LargeBody(data), as_of=None)


class _Envelope(_Body):
    """A large `/score` body with its customers not yet checked."""

    customers: Annotated[list[Any], Field(min_length=1, max_length=MAX_CUSTOMERS)]
    as_of: AsOf = None


_CUSTOMER_LIST: TypeAdapter[list[CustomerHistory]] = TypeAdapter(list[CustomerHistory])


async def checked_in_slices(large: LargeBody) -> ScoreRequest:
    """A large `/score` body checked a slice of customers at a time, yielding in between.

    The result and the errors are those of checking it at once (`ScoreRequest`).

    Raises:
        ValidationError: the body breaks the contract; every problem is named.
    """
    try:
        parsed = from_json(large.body)
    except ValueError:
        _Envelope.model_validate_json(large.body)  # raises pydantic's own "invalid JSON"
        raise
    outer: list[ErrorDetails] = []  # the top level's, without the customers' rows
    envelope = None
    try:
        envelope = _Envelope.model_validate(parsed)
    except ValidationError as exc:
        outer = exc.errors(include_url=False)
    # In the order checking at once gives: the customers, their rows, then the rest.
    problems = [e for e in outer if e["loc"][:1] == ("customers",)]
    raw = parsed.get("customers") if isinstance(parsed, dict) else None
    raw = raw if isinstance(raw, list) else []
    customers: list[CustomerHistory] = []
    for start, end in _slices(raw):
        try:
            customers += _CUSTOMER_LIST.validate_python(raw[start:end])
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                at, *inside = error["loc"]
                problems.append({**error, "loc": ("customers", start + int(at), *inside)})
        await asyncio.sleep(0)  # the event loop serves other requests between two slices
    problems += [e for e in outer if e["loc"][:1] != ("customers",)]
    if problems or envelope is None:
        raise _errors(problems)
    return ScoreRequest.model_construct(customers=customers, as_of=envelope.as_of)


def _slices(customers: list[Any]) -> list[tuple[int, int]]:
    """Runs of customers of about `SLICE_ROWS` rows (a bigger customer is a run alone)."""
    runs, start, rows = [], 0, 0
    for at, customer in enumerate(customers):
        if isinstance(customer, dict):
            rows += sum(
                len(customer[name]) if isinstance(customer.get(name), list) else 0
                for name in ("transactions", "events", "subscriptions")
            )
        rows += 1
        if rows >= SLICE_ROWS:
            runs.append((start, at + 1))
            start, rows = at + 1, 0
    if start < len(customers):
        runs.append((start, len(customers)))
    return runs


class LookupRequest(_Body):
    """`/lookup`: the customers whose nightly scores are wanted."""

    customer_ids: CustomerIds


class NoBody(_Body):
    """`/status` and `/reload` take no fields: an empty object, or no body."""


def duplicate_ids(customers: list[CustomerHistory]) -> list[int]:
    """Positions of customers whose id an earlier customer of the request already has."""
    seen: set[str] = set()
    repeated = []
    for position, customer in enumerate(customers):
        if customer.customer_id in seen:
            repeated.append(position)
        seen.add(customer.customer_id)
    return repeated


def example_customers() -> list[CustomerHistory]:
    """The example request's customers, validated."""
    return [CustomerHistory.model_validate(c) for c in EXAMPLE_REQUEST["customers"]]
