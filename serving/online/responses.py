"""The online service's answers, as the OpenAPI description declares them.

Every date-time carries its zone (UTC, `Z`). A score row is declared column by column (the
columns of `serving.scoring.columns.SCORE_COLUMNS`) but passed through as the dict the scores
store's encoding gives: validating each row again would cost every request.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from features.schema import ID
from serving.scoring.columns import (
    ACTION_COLUMNS,
    ACTIVE_COLUMN,
    CONTRACT_COLUMNS,
    INTERVAL_COLUMNS,
    SCORE_COLUMNS,
    SEGMENT_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    VALUE_COLUMNS,
)

UtcText = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""A date-time as text in UTC, ending in `Z` (how score rows carry them)."""

# The type of each score column the service knows; a column the scorer adds later is passed
# through and declared without a type until it is added here.
_ROW_TYPES: dict[str, Any] = {
    **dict.fromkeys((*SEGMENT_COLUMNS, *ACTION_COLUMNS, "next_order_status"), str | None),
    **dict.fromkeys((*VALUE_COLUMNS, *INTERVAL_COLUMNS, *SUBSCRIPTION_COLUMNS), float | None),
    ID: str,
    "as_of": UtcText,
    "expected_next_order": UtcText | None,
    "days_overdue": float | None,
    ACTIVE_COLUMN: bool,
    "discount_eligible": bool,
    "reasons": str,
    "model_version": str,
    "churn_window_days": int,
    "horizon_days": int,
}
ROW_TIMESTAMPS = tuple(name for name in SCORE_COLUMNS if name in ("as_of", "expected_next_order"))
"""The date-time columns of a score row."""


def _row_field(name: str) -> tuple[Any, Any]:
    kind = _ROW_TYPES.get(name, Any)
    if name in CONTRACT_COLUMNS:  # promised in every row, never null
        return (str if kind == str | None else kind, Field())
    return (kind, Field(default=None))


ScoreRow = create_model(  # type: ignore[call-overload]
    "ScoreRow",
    __config__=ConfigDict(extra="allow"),
    __doc__="One customer's scores: the columns of `vafa score` (contract section 2).",
    **{name: _row_field(name) for name in SCORE_COLUMNS},
)
ScoreRows = Annotated[
    list[dict[str, Any]],
    WithJsonSchema({"type": "array", "items": ScoreRow.model_json_schema(mode="serialization")}),
]


def utc_text(moment: dt.datetime) -> str:
    """A naive UTC moment as a score row writes it: milliseconds and `Z`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def zoned(text: object) -> object:
    """A score row's date-time text with its zone: naive text is UTC, so it gets a `Z`."""
    if not isinstance(text, str) or not text or text.endswith("Z"):
        return text
    if len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        return text  # already has an offset
    return text + "Z"


def zone_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score rows with their date-times zoned, in place (rows stored before they carried `Z`)."""
    for row in rows:
        for name in ROW_TIMESTAMPS:
            if name in row:
                row[name] = zoned(row[name])
    return rows


def stored_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored score rows as the spec declares them, in place (what `/lookup` answers).

    Date-times zoned (`zone_rows`), and the ranges (`INTERVAL_COLUMNS`, promised since) null
    in rows stored before them.
    """
    for row in zone_rows(rows):
        for name in INTERVAL_COLUMNS:
            row.setdefault(name, None)
    return rows


def utc(moment: dt.datetime) -> dt.datetime:
    """A naive UTC moment made aware, so it is written with its zone."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


class Unscored(BaseModel):
    """A customer of the request who gets no score, and why."""

    customer_id: str
    reason: str


class IgnoredRows(BaseModel):
    """Rows dated at or after as_of: not features (point in time), counted so nothing is silent."""

    transactions: int = 0
    events: int = 0


class ScoreResponse(BaseModel):
    """Scores of one request, all from one model version, all as of one moment."""

    model_version: str
    as_of: dt.datetime = Field(
        description="The moment scored as of (UTC); every score row carries the same."
    )
    as_of_from: Literal["request", "clock"] = Field(
        default="request",
        description="`request`: the request's as_of. `clock`: none was given, so tomorrow "
        "00:00 UTC by the server's clock (`features.schema.latest_as_of`): every row up to now "
        "counts. The batch's default, the day after the data's last transaction, is the same "
        "day for a nightly feed that runs through today; applied to one customer's rows it "
        "would score them as of their own last purchase, so it is not used online.",
    )
    scores: ScoreRows
    unscored: list[Unscored] = Field(default_factory=list)
    ignored_rows: IgnoredRows = Field(default_factory=IgnoredRows)


class LookupResponse(BaseModel):
    """The served nightly run's scores of the ids found; ids it does not hold are listed."""

    scores: ScoreRows
    unknown: list[str]
    latest_run: dt.date | None = Field(
        default=None, description="The as-of date of the nightly run served (null: none yet)."
    )


class ModelStatus(BaseModel):
    """What the service serves and how its last look at the registry went."""

    ready: bool
    model_version: str | None
    loaded_at: dt.datetime | None
    last_check: dt.datetime | None
    registry_error: str | None
    store_error: str | None


class ErrorDetail(BaseModel):
    """One problem of a request: where (`loc`, the path to the field) and what."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str | None = None


class ErrorBody(BaseModel):
    """Every answer other than 2xx: what is wrong, and for a bad body, field by field."""

    error: str
    detail: list[ErrorDetail] = Field(default_factory=list)
