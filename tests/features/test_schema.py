"""The data contract's helpers: the default cutoff and timestamps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.schema import Tables, default_as_of, latest_as_of, to_timestamp
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


def test_before_a_cutoff_after_every_row_copies_nothing() -> None:
    # `vafa train` cuts the tables at the day after the last row; a copy would be gigabytes.
    tables = transactions("2024-01-01", "2024-03-05")
    kept = tables.before(pd.Timestamp("2024-03-06")).transactions
    assert np.shares_memory(kept["amount"].to_numpy(), tables.transactions["amount"].to_numpy())
    kept.loc[0, "amount"] = -1.0  # copy on write: the tables stay as they were
    assert tables.transactions["amount"].iloc[0] != -1.0
    assert len(tables.before(pd.Timestamp("2024-03-05")).transactions) == 1


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


@pytest.mark.parametrize(
    "value",
    ["01/11/2026", "11/01/2026", "2026.11.01", "1 Nov 2026", "Nov 1, 2026", "20261101", "2026"],
)
def test_to_timestamp_refuses_text_that_is_not_iso_8601(value: str) -> None:
    # pd.Timestamp("01/11/2026") guesses 11 January: a date is never guessed.
    with pytest.raises(ValueError, match="ISO 8601"):
        to_timestamp(value)


@pytest.mark.parametrize("value", ["2300-01-01", "1850-06-01", pd.Timestamp("2262-01-01")])
def test_to_timestamp_refuses_dates_outside_the_supported_range(value: object) -> None:
    with pytest.raises(ValueError, match="outside the supported range"):
        to_timestamp(value)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-12-04T21:43", "2026-12-05"),
        ("2026-12-04T00:00", "2026-12-05"),
        ("2026-12-05T01:00+05:00", "2026-12-05"),  # 20:00 UTC the day before
        ("2026-12-31T23:59", "2027-01-01"),
    ],
)
def test_latest_as_of_is_tomorrow_utc(now: str, expected: str) -> None:
    assert latest_as_of(pd.Timestamp(now)) == pd.Timestamp(expected)


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        # One row dated 2062 does not make the as-of 2062: the rest of the data decides.
        (("2026-10-31T10:00", "2062-10-30"), "2026-11-01"),
        # A row dated tomorrow is not "after tomorrow", but the as-of stops at tomorrow.
        (("2026-10-31", "2026-12-05T08:00"), "2026-12-05"),
        (("2026-12-04T23:00",), "2026-12-05"),
    ],
)
def test_default_as_of_ignores_rows_after_tomorrow_and_stops_at_tomorrow(
    stamps: tuple[str, ...], expected: str
) -> None:
    now = pd.Timestamp("2026-12-04T21:43")
    assert default_as_of(transactions(*stamps), now=now) == pd.Timestamp(expected)


@pytest.mark.parametrize("stamps", [(), ("2062-10-30",)])
def test_default_as_of_without_a_transaction_up_to_tomorrow_is_an_error(
    stamps: tuple[str, ...],
) -> None:
    with pytest.raises(ValueError, match="no transaction"):
        default_as_of(transactions(*stamps), now=pd.Timestamp("2026-12-04"))
