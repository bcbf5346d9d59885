"""A request's rows to the contract tables the feature code reads."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from features.synthetic import generate_tables
from serving.online.champion import Champion
from serving.online.requests import later_rows, request_shape, request_tables, score_customers
from serving.online.schema import CustomerHistory, example_customers
from serving.scoring.columns import CONTRACT_COLUMNS
from serving.scoring.scorer import Scorer
from tests.serving.batch.factories import AS_OF, small_bundle
from tests.serving.online.test_openapi import conforms


def _customer(**fields: Any) -> CustomerHistory:
    return CustomerHistory.model_validate(
        {"customer_id": "x", "transactions": [{"ts": "2026-01-01", "amount": 5}], **fields}
    )


def test_tables_and_columns_are_present_as_a_data_folder_would_have_them() -> None:
    without = request_tables([_customer()], ["k"])
    assert without.events is None and without.customers is None
    assert list(without.transactions) == ["customer_id", "ts", "amount"]
    empty = request_tables([_customer(events=[], profile=None)], ["k"])
    assert empty.events is not None and len(empty.events["customer_id"]) == 0
    assert empty.customers is not None and len(empty.customers["customer_id"]) == 0
    with_margin = _customer(transactions=[{"ts": "2026-01-01", "amount": 5, "margin": None}])
    tables = request_tables([with_margin, _customer()], ["a", "b"])
    assert "margin" in tables.transactions  # one row gave it, so the table has it
    assert np.isnan(tables.transactions["margin"]).tolist() == [True, True]
    assert tables.transactions["customer_id"].to_pylist() == ["a", "b"]
    assert tables.transactions["ts"].dtype == np.dtype("datetime64[us]")


def test_zoned_timestamps_become_naive_utc() -> None:
    customer = _customer(transactions=[{"ts": "2026-01-01T03:00:00+03:30", "amount": 1}])
    tables = request_tables([customer], ["k"])
    assert tables.transactions["ts"][0] == np.datetime64("2025-12-31T23:30:00")


def test_the_loaders_conversions_happen_in_the_columns() -> None:
    """Zoned times to naive UTC and empty text to missing, as the loader does a file."""
    customer = _customer(
        transactions=[
            {"ts": "2026-01-01T03:00:00+03:30", "amount": 1, "channel": ""},
            {"ts": "2026-01-01T03:00:00Z", "amount": 2, "channel": "  "},
            {"ts": "2026-01-01 03:00", "amount": 3, "channel": "web"},
        ],
        events=[{"ts": "2026-01-02", "event": "email_open", "channel": ""}],
        profile={"signup_ts": "2025-06-01T00:00:00-02:00", "segment": ""},
    )
    tables = request_tables([customer], ["k"])
    assert tables.transactions["ts"].tolist() == [
        dt.datetime(2025, 12, 31, 23, 30),
        dt.datetime(2026, 1, 1, 3),
        dt.datetime(2026, 1, 1, 3),
    ]
    assert tables.transactions["channel"].to_pylist() == [None, None, "web"]
    assert tables.events is not None and tables.events["channel"].to_pylist() == [None]
    assert tables.events["event"].to_pylist() == ["email_open"]
    assert tables.customers is not None
    assert tables.customers["signup_ts"].tolist() == [dt.datetime(2025, 6, 1, 2)]
    assert tables.customers["segment"].to_pylist() == [None]


def test_rows_at_or_after_as_of_are_counted_per_request() -> None:
    def history(*days: int) -> CustomerHistory:
        return _customer(transactions=[{"ts": f"2026-01-{d:02d}", "amount": 1} for d in days])

    requests = [[history(1, 5, 9), history(4)], [history()], [history(8, 2, 10)]]
    customers = [c for r in requests for c in r]
    tables = request_tables(customers, [str(i) for i in range(len(customers))])
    sizes = [sum(len(c.transactions) for c in r) for r in requests]
    assert later_rows(tables.transactions, pd.Timestamp("2026-01-05"), sizes) == [2, 0, 2]
    assert later_rows(None, pd.Timestamp("2026-01-05"), sizes) == [0, 0, 0]


def test_a_part_of_a_request_keeps_the_tables_and_columns_of_the_whole() -> None:
    """A large request is scored in parts: each must see the tables a folder of all its rows has."""
    plain = _customer()
    rich = _customer(
        transactions=[{"ts": "2026-01-01", "amount": 5, "margin": 2.0}],
        events=[{"ts": "2026-01-02", "event": "email_open"}],
        profile={"segment": "student"},
    )
    shape = request_shape([plain, rich])
    assert (
        shape.has_events and shape.has_profiles and shape.transactions == ("ts", "amount", "margin")
    )
    alone = request_tables([plain], ["k"])
    assert alone.events is None and "margin" not in alone.transactions
    part = request_tables([plain], ["k"], shape)
    assert part.events is not None and len(part.events["customer_id"]) == 0
    assert part.customers is not None and list(part.customers) == ["customer_id", "segment"]
    assert np.isnan(part.transactions["margin"]).tolist() == [True]


def test_score_answers_carry_the_ranges_and_conform_to_the_spec() -> None:
    """A `/score` row has `clv_low` <= `clv_high` (and spend's), as the OpenAPI spec declares."""
    scorer = Scorer(small_bundle(generate_tables(300, seed=2)), "5")
    champion = Champion(scorer, "5", dt.datetime(2026, 11, 1))
    answer = score_customers(champion, example_customers(), AS_OF)
    assert answer.scores
    for row in answer.scores:
        assert set(CONTRACT_COLUMNS) <= set(row)
        assert 0.0 <= row["clv_low"] <= row["clv_high"]
        assert row["spend_low"] <= row["spend_high"]
    conforms(answer.model_dump(mode="json"), "ScoreResponse")
