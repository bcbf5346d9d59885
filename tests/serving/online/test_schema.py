"""The request bodies: timestamps, duplicate ids, and the one example request."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from serving.online.schema import EXAMPLE_REQUEST, CustomerHistory, Timestamp, duplicate_ids

README = Path(__file__).resolve().parents[3] / "README.md"


def _customer(**fields: Any) -> CustomerHistory:
    return CustomerHistory.model_validate(
        {"customer_id": "x", "transactions": [{"ts": "2026-01-01", "amount": 5}], **fields}
    )


@pytest.mark.parametrize(
    "ts",
    [1714570000, 1714570000.5, "yesterday", "2026-13-01", "1899-12-31T12:00:00", "2262-01-01Z", ""],
)
def test_only_iso_text_in_range_is_a_row_timestamp(ts: object) -> None:
    with pytest.raises(ValidationError) as raised:
        _customer(transactions=[{"ts": ts, "amount": 1}])
    assert raised.value.errors()[0]["loc"] == ("transactions", 0, "ts")


def test_as_of_is_naive_utc() -> None:
    adapter = TypeAdapter(Timestamp)
    assert adapter.validate_json('"2026-11-01T05:00:00+05:00"') == dt.datetime(2026, 11, 1)
    assert adapter.validate_json('"2026-11-01"') == dt.datetime(2026, 11, 1)
    with pytest.raises(ValidationError):
        adapter.validate_json("1714570000")
    assert adapter.json_schema() == {"type": "string", "format": "date-time"}


def test_duplicate_ids_are_found() -> None:
    customers = [_customer(), _customer(customer_id="y"), _customer()]
    assert duplicate_ids(customers) == [2]


def test_the_readme_curl_body_is_the_example_request() -> None:
    """The README's example is the one the tests send and the start-up check scores."""
    import json

    text = README.read_text()
    section = text[text.index("## Online scoring") :]
    body = re.search(r"<<'JSON'\n(.*?)\nJSON", section, re.DOTALL)
    assert body is not None
    assert json.loads(body.group(1)) == EXAMPLE_REQUEST
