"""Checks that need more than one value: customers left to score as of a date."""

from __future__ import annotations

import pandas as pd
import pytest

from features.consistency import require_customers
from features.schema import Tables
from features.validation import DataValidationError
from tests.factories import frame, ts


def test_require_customers_passes_when_one_transaction_is_before_the_as_of(shop: Tables) -> None:
    require_customers(shop, pd.Timestamp("2024-01-01T00:00:01"))


@pytest.mark.parametrize(
    ("stamps", "detail"),
    [
        ((), "the table has no rows"),
        (("2024-01-05", "2024-03-01"), "the first is dated 2024-01-05"),
    ],
)
def test_require_customers_refuses_an_as_of_before_every_transaction(
    stamps: tuple[str, ...], detail: str
) -> None:
    transactions = frame(
        customer_id=["a"] * len(stamps), ts=ts(*stamps), amount=[1.0] * len(stamps)
    )
    tables = Tables(transactions, sources={"transactions": "/data/transactions.csv"})

    with pytest.raises(DataValidationError) as caught:
        require_customers(tables, pd.Timestamp("2024-01-01"))

    (problem,) = caught.value.problems
    assert problem.path == "/data/transactions.csv" and problem.column == "ts"
    assert "no transaction before the as-of 2024-01-01" in problem.message
    assert detail in problem.message and "no customer to score" in problem.message
