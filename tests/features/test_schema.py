"""The data contract's helpers: the default cutoff and timestamps."""

from __future__ import annotations

import pandas as pd
import pytest

from features.schema import Tables, default_as_of, to_timestamp
from tests.factories import frame, ts


def transactions(*stamps: str) -> Tables:
    return Tables(
        frame(customer_id=["a"] * len(stamps), ts=ts(*stamps), amount=[1.0] * len(stamps))
    )


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        (("2024-01-01", "2024-03-05T17:45"), "2024-03-06"),  # the day after the last one
        (("2024-03-05",), "2024-03-06"),  # a purchase at midnight is still before the cutoff
        (("2024-03-05T23:59:59.999999", "2024-01-01"), "2024-03-06"),  # order does not matter
        (("2024-12-31T08:00",), "2025-01-01"),  # across a year's end
    ],
)
def test_default_as_of_is_the_day_after_the_last_transaction(
    stamps: tuple[str, ...], expected: str
) -> None:
    tables = transactions(*stamps)
    cutoff = default_as_of(tables)
    assert cutoff == pd.Timestamp(expected)
    assert cutoff.tzinfo is None and cutoff.unit == "us"
    assert len(tables.before(cutoff).transactions) == len(stamps)  # every row is before it


def test_default_as_of_reads_only_transactions(shop: Tables) -> None:
    # Events later than every transaction do not move the cutoff: it follows purchases.
    later = frame(customer_id=["a"], ts=ts("2030-01-01"), event=["session"])
    assert default_as_of(Tables(shop.transactions, events=later)) == pd.Timestamp("2024-03-02")


def test_default_as_of_leaves_the_tables_unchanged(shop: Tables) -> None:
    before = shop.transactions.copy()
    default_as_of(shop)
    pd.testing.assert_frame_equal(shop.transactions, before)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-05", "2024-03-05"),
        ("2024-03-05T10:00+02:00", "2024-03-05T08:00"),  # converted to naive UTC
        (pd.Timestamp("2024-03-05", tz="UTC"), "2024-03-05"),
    ],
)
def test_to_timestamp_is_naive_utc(value: object, expected: str) -> None:
    converted = to_timestamp(value)
    assert converted == pd.Timestamp(expected) and converted.tzinfo is None


@pytest.mark.parametrize("value", ["yesterday", "", None])
def test_to_timestamp_rejects_what_is_not_a_date(value: object) -> None:
    with pytest.raises(ValueError):
        to_timestamp(value)
