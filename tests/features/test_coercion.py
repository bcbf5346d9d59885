"""Tests for the coercion of raw in-memory Arrow tables to contract types."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from features.coercion import coerce_table
from features.schema import TABLE_SPECS
from features.validation import RawTable


def _text(columns: dict[str, list[str]]) -> RawTable:
    """A transactions table as read from CSV, in memory: every value is text."""
    data = pa.table({name: pa.array(values, pa.large_string()) for name, values in columns.items()})
    return RawTable(Path("transactions.csv"), data, first_row=2)


def _transactions(raw: RawTable) -> pd.DataFrame:
    frame, issues, _ = coerce_table(TABLE_SPECS["transactions"], raw)
    assert not [issue for issue in issues if issue.mask.any()]
    return frame


def _ts(values: Sequence[str | None]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, format="ISO8601"), dtype="datetime64[us]")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            ["2024-03-01", "2024-03-01T10:00:00", "2024-03-01 10:00:00.250"],
            ["2024-03-01", "2024-03-01T10:00:00", "2024-03-01T10:00:00.250"],
            id="naive-means-utc",
        ),
        pytest.param(
            ["2024-03-01T10:00:00Z", "2024-03-01T10:00:00+02:00", "2024-03-01T23:30:00-05:00"],
            ["2024-03-01T10:00:00", "2024-03-01T08:00:00", "2024-03-02T04:30:00"],
            id="zoned",
        ),
        pytest.param(
            ["2024-03-01", "2024-03-01T10:00:00+02:00", "2024-03-01T10:00:00"],
            ["2024-03-01", "2024-03-01T08:00:00", "2024-03-01T10:00:00"],
            id="mixed",
        ),
    ],
)
def test_timestamps_land_as_naive_utc(values: list[str], expected: list[str]) -> None:
    raw = _text({"customer_id": ["c1"] * len(values), "ts": values, "amount": ["1"] * len(values)})

    ts = _transactions(raw)["ts"]

    pd.testing.assert_series_equal(ts, _ts(expected), check_names=False)


def test_parquet_zoned_timestamps_are_converted_to_utc() -> None:
    paris = pd.to_datetime(["2024-07-01T12:00:00", "2024-01-01T12:00:00"]).tz_localize(
        "Europe/Paris"
    )
    # As Parquet reads: typed columns, data row 0 is row 1.
    data = pa.table({"customer_id": ["a", "b"], "ts": pa.array(paris.array), "amount": [1.0, 2.0]})

    ts = _transactions(RawTable(Path("transactions.parquet"), data, first_row=1))["ts"]

    pd.testing.assert_series_equal(
        ts, _ts(["2024-07-01T10:00:00", "2024-01-01T11:00:00"]), check_names=False
    )


def test_strings_are_stripped_and_empty_is_missing() -> None:
    raw = _text(
        {"customer_id": ["  c1 "], "ts": ["2024-01-01"], "amount": [" 5 "], "category": ["  "]}
    )

    frame = _transactions(raw)

    assert frame["customer_id"].tolist() == ["c1"]
    assert frame["category"].isna().all()
    assert frame["amount"].tolist() == [5.0]
