"""Subscription rows in a `/score` request: checked as the loader checks them, typed as it types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pandas.testing import assert_frame_equal
from pydantic import ValidationError

from features.io import load_tables
from features.schema import SUBSCRIPTIONS
from serving.online.requests import request_shape, request_tables
from serving.online.schema import CustomerHistory, ScoreRequest, explained

TERMS: dict[str, list[dict[str, Any]]] = {
    "c1": [
        {
            "start_ts": "2026-01-01",
            "end_ts": "2026-02-01",
            "plan": "pro",
            "amount": 30,
            "billing_period_months": 1,
            "discount": 0.1,
            "quantity": 3,
            "trial": False,
        },
        {
            "start_ts": "2026-02-01T00:00:00Z",
            "end_ts": "2026-03-01",
            "plan": "pro",
            "amount": 30.5,
            "billing_period_months": 1.0,
            "quantity": 3,
            "cancel_ts": "2026-02-20T09:30:00+02:00",
        },
        {"start_ts": "2026-01-15", "end_ts": "2026-02-15", "plan": " addon ", "trial": True},
    ],
    "c2": [
        {
            "start_ts": "2025-06-01T12:00:00+02:00",
            "end_ts": "2026-06-01",
            "plan": "",
            "amount": 0,
            "billing_period_months": 12,
        }
    ],
}


def _customer(customer_id: str, **tables: Any) -> CustomerHistory:
    body = {"customer_id": customer_id, "transactions": [{"ts": "2026-01-05", "amount": 1}]}
    return CustomerHistory.model_validate_json(json.dumps({**body, **tables}))


def _frame(columns: dict[str, Any]) -> pd.DataFrame:
    """A request table as a frame, text as pandas `str` as the loader gives it."""
    return pd.DataFrame(
        {
            name: pd.Series(values.to_pandas(), dtype="str")
            if isinstance(values, pa.Array | pa.ChunkedArray)
            else pd.Series(values)
            for name, values in columns.items()
        }
    )


def _csv(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """The same terms as a CSV file: each value as a person would write it."""
    names = SUBSCRIPTIONS.column_names
    lines = [",".join(names)]
    for customer_id, row in rows:
        cells = [customer_id] + [
            "" if row.get(n) is None else str(row[n]).lower() if n == "trial" else str(row[n])
            for n in names[1:]
        ]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def test_a_request_builds_the_table_the_loader_builds_from_a_file(tmp_path: Path) -> None:
    customers = [_customer(cid, subscriptions=rows) for cid, rows in TERMS.items()]
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "transactions.csv").write_text("customer_id,ts,amount\nc1,2026-01-05,1\n")
    (folder / "subscriptions.csv").write_text(
        _csv([(cid, row) for cid, rows in TERMS.items() for row in rows])
    )
    loaded = load_tables(folder).tables.subscriptions
    assert loaded is not None

    online = request_tables(customers, list(TERMS)).subscriptions

    assert online is not None
    frame = _frame(online)
    assert_frame_equal(frame, loaded)
    assert frame["trial"].dtype == "boolean" and frame["cancel_ts"].dtype == "datetime64[us]"
    # The loader's conversions: zoned times to naive UTC, empty text to missing.
    assert frame.loc[1, "cancel_ts"] == pd.Timestamp("2026-02-20T07:30:00")
    assert frame.loc[3, "start_ts"] == pd.Timestamp("2025-06-01T10:00:00")
    assert frame["plan"].isna().tolist() == [False, False, False, True]
    assert frame.loc[2, "plan"] == "addon"


def test_the_table_is_present_as_a_data_folder_would_have_it() -> None:
    without = request_tables([_customer("a")], ["k"])
    assert without.subscriptions is None
    empty = request_tables([_customer("a", subscriptions=[])], ["k"])
    assert empty.subscriptions is not None
    assert list(empty.subscriptions) == ["customer_id", "start_ts", "end_ts"]
    assert len(empty.subscriptions["customer_id"]) == 0
    # A part of a large request keeps the columns of the whole.
    rich = _customer("b", subscriptions=[{**TERMS["c1"][0]}])
    shape = request_shape([_customer("a"), rich])
    assert shape.has_subscriptions and "trial" in shape.subscriptions
    part = request_tables([_customer("a")], ["k"], shape).subscriptions
    given = [c for c in SUBSCRIPTIONS.column_names if c != "cancel_ts"]  # no row gave a notice
    assert part is not None and list(part) == given
    assert part["trial"].dtype == "boolean" and part["discount"].dtype == np.float64


REFUSED = {
    "end at start": ({"start_ts": "2026-01-01", "end_ts": "2026-01-01"}, "end_ts not after"),
    "notice after the end": (
        {"start_ts": "2026-01-01", "end_ts": "2026-02-01", "cancel_ts": "2026-02-01T00:00:01Z"},
        "cancel_ts after end_ts",
    ),
    "discount over 1": (
        {"start_ts": "2026-01-01", "end_ts": "2026-02-01", "discount": 1.01},
        "less than or equal to 1",
    ),
    "no seats": (
        {"start_ts": "2026-01-01", "end_ts": "2026-02-01", "quantity": 0},
        "greater than 0",
    ),
    "a fraction of a month": (
        {"start_ts": "2026-01-01", "end_ts": "2026-02-01", "billing_period_months": 1.5},
        "multiple of 1",
    ),
    "zero months": (
        {"start_ts": "2026-01-01", "end_ts": "2026-02-01", "billing_period_months": 0},
        "greater than or equal to 1",
    ),
    "a flag as text": (
        {"start_ts": "2026-01-01", "end_ts": "2026-02-01", "trial": "yes"},
        "valid boolean",
    ),
    "an unknown field": (
        {"start_ts": "2026-01-01", "end_ts": "2026-02-01", "seats": 3},
        "unknown field 'seats'",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_bad_term_is_refused_naming_it(case: str) -> None:
    row, message = REFUSED[case]
    good = {"start_ts": "2025-01-01", "end_ts": "2025-02-01"}
    body = {"customers": [{"customer_id": "c1", "subscriptions": [good, row]}]}

    with pytest.raises(ValidationError) as caught:
        ScoreRequest.model_validate_json(json.dumps(body))

    errors = caught.value.errors()
    assert len(errors) == 1 and message in errors[0]["msg"]
    assert errors[0]["loc"][:4] == ("customers", 0, "subscriptions", 1)


@pytest.mark.parametrize(
    ("plans", "refused"),
    [
        (("pro", "pro"), True),
        (("pro", "addon"), False),
        ((None, None), True),
        (("", None), True),  # empty text is no plan, as in a file
    ],
)
def test_overlapping_terms_of_one_plan_are_refused(
    plans: tuple[str | None, str | None], refused: bool
) -> None:
    first = {"start_ts": "2026-01-01", "end_ts": "2026-02-01", "plan": plans[0]}
    second = {"start_ts": "2026-01-31T23:00:00+02:00", "end_ts": "2026-03-01", "plan": plans[1]}
    renewal = {"start_ts": "2026-03-01", "end_ts": "2026-04-01", "plan": plans[1]}
    body = {"customers": [{"customer_id": "c1", "subscriptions": [first, second, renewal]}]}

    if not refused:
        assert ScoreRequest.model_validate_json(json.dumps(body)).customers[0].subscriptions
        return
    with pytest.raises(ValidationError) as caught:
        ScoreRequest.model_validate_json(json.dumps(body))
    errors = explained(caught.value).errors()
    assert len(errors) == 1 and errors[0]["loc"] == ("customers", 0)
    assert "subscriptions 0 and 1: overlapping terms" in errors[0]["msg"]


def test_the_request_schema_documents_the_table() -> None:
    schema = ScoreRequest.model_json_schema()
    row = schema["$defs"]["SubscriptionRow"]
    assert row["required"] == ["start_ts", "end_ts"]
    properties = row["properties"]
    assert properties["trial"]["anyOf"][0]["type"] == "boolean"
    assert properties["discount"]["anyOf"][0]["maximum"] == 1
    assert properties["quantity"]["anyOf"][0]["exclusiveMinimum"] == 0
    assert properties["billing_period_months"]["anyOf"][0]["multipleOf"] == 1
    history = schema["$defs"]["CustomerHistory"]["properties"]
    assert "subscriptions" in history
