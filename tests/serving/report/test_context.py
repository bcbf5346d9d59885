"""Customer context from the data folder: retention from transactions, each main category."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_series_equal

from features.schema import Tables
from serving.report.context import main_category, retention_rate, retention_rates
from tests.factories import frame, ts


def test_retention_rate() -> None:
    previous = pd.Series({"a": 1.0, "b": 0.0, "c": 2.0})
    current = pd.Series({"a": 0.0, "c": 1.0, "d": 3.0})
    assert retention_rate(previous, current) == pytest.approx(0.5)  # a left, c stayed
    assert retention_rate(pd.Series({"a": 0.0}), current) is None


def test_retention_rates_from_transactions() -> None:
    # as_of 2024-04-01: the month before is [03-02, 04-01), the one before that [02-01, 03-02).
    transactions = frame(
        customer_id=["a", "a", "b", "c", "c", "d"],
        ts=ts("2024-02-10", "2024-03-20", "2024-02-15", "2024-02-20", "2024-03-05", "2024-03-25"),
        amount=[10.0, 10.0, 5.0, 1.0, -1.0, 3.0],
    )
    rates = retention_rates(Tables(transactions), pd.Timestamp("2024-04-01"))
    # a bought in both months; b only before; c's later row is a refund, not a purchase.
    assert rates["retention_monthly"] == pytest.approx(1 / 3)
    assert rates["churn_monthly"] == pytest.approx(2 / 3)
    # the quarter before [2024-01-02, 2024-04-01) is empty: nobody to retain.
    assert rates["retention_quarterly"] is None and rates["churn_quarterly"] is None


def test_main_category_by_purchase_value_before_as_of() -> None:
    transactions = frame(
        customer_id=["a", "a", "a", "a", "b", "b", "c"],
        ts=ts(
            "2024-01-01",
            "2024-01-02",
            "2024-01-03",
            "2024-03-01",
            "2024-01-01",
            "2024-01-02",
            "2024-01-05",
        ),
        amount=[10.0, 8.0, -50.0, 99.0, 5.0, 5.0, 7.0],
        category=["books", "toys", "books", "toys", "toys", "books", None],
    )
    # a: books 10 vs toys 8 (the refund and the March row do not count); b: a tie goes to
    # the first name; c: no category.
    expected = pd.Series({"a": "books", "b": "books"}, name="main_category", dtype="str")
    result = main_category(transactions, pd.Timestamp("2024-02-01"))
    assert_series_equal(result, expected, check_index_type=False, check_names=False)
    assert result.name == "main_category"
