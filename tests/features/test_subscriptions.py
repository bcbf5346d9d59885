"""Subscription features on hand-made contracts, computed by hand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from features.build import CATEGORICAL_FEATURES, build_features, feature_columns
from features.schema import Tables
from features.subscriptions import DAYS_PER_MONTH, term_months
from tests.factories import frame, ts

AS_OF = "2024-03-01"
NAN = np.nan
COLUMNS = ["customer_id", "start_ts", "end_ts", "plan", "amount", "discount", "quantity"]
COLUMNS += ["cancel_ts", "trial"]


def terms(rows: list[tuple[object, ...]], columns: list[str] = COLUMNS) -> pd.DataFrame:
    """A subscriptions table with the loader's dtypes."""
    table = pd.DataFrame(rows, columns=columns)
    table["customer_id"] = table["customer_id"].astype("str")
    for name in ("start_ts", "end_ts", "cancel_ts"):
        if name in table:
            table[name] = pd.to_datetime(table[name]).astype("datetime64[us]")
    if "plan" in table:
        table["plan"] = table["plan"].astype("str")
    return table


CONTRACTS = terms(
    [
        # monthly: basic renewed once, then pro (3 seats, 10% off) and an add-on from 02-20.
        ("monthly", "2023-12-15", "2024-01-15", "basic", 10.0, 0.0, 1.0, None, False),
        ("monthly", "2024-01-15", "2024-02-15", "basic", 10.0, 0.0, 1.0, None, False),
        ("monthly", "2024-02-15", "2024-03-15", "pro", 20.0, 0.1, 3.0, None, False),
        ("monthly", "2024-02-20", "2024-03-20", "extra", 5.0, 0.0, 1.0, None, False),
        # annual: notice given 02-01; the renewal starting 06-01 is not known on 03-01.
        ("annual", "2023-06-01", "2024-06-01", "pro", 240.0, 0.2, 10.0, "2024-02-01", False),
        ("annual", "2024-06-01", "2025-06-01", "pro", 240.0, 0.2, 10.0, None, False),
        ("trial", "2024-02-20", "2024-03-05", "pro", 0.0, None, 1.0, None, True),
        # gap: renewed 3 days late at a lower price (a downgrade across the gap).
        ("gap", "2024-01-10", "2024-02-10", "basic", 30.0, 0.0, 2.0, None, False),
        ("gap", "2024-02-13", "2024-03-13", "basic", 20.0, 0.0, 2.0, None, False),
        ("gone", "2023-01-01", "2023-02-01", "basic", 10.0, 0.0, 1.0, None, False),
        ("lapsed_no_sales", "2023-01-01", "2023-02-01", "basic", 10.0, 0.0, 1.0, None, False),
    ]
)


@pytest.fixture
def contracts() -> Tables:
    transactions = frame(
        customer_id=["monthly", "shopper", "gone"],
        ts=ts("2024-01-01", "2024-02-01", "2023-01-05"),
        amount=[10.0, 5.0, 3.0],
    )
    events = frame(
        customer_id=["monthly"] * 5 + ["annual"] * 2,
        ts=ts(
            "2024-02-25",
            "2024-02-26",
            "2024-01-15",
            "2023-12-20",
            "2024-02-27",
            "2024-02-28",
            "2023-11-01",
        ),
        event=["session", "session", "session", "session", "payment_failed", "login_x", "login_x"],
    )
    return Tables(transactions, events=events, subscriptions=CONTRACTS)


def test_contract_features_by_hand(contracts: Tables) -> None:
    got = build_features(contracts, AS_OF).set_index("customer_id")
    # Subscribers without a sale are rows; "lapsed_no_sales" holds no term on 03-01: not one.
    assert list(got.index) == ["annual", "gap", "gone", "monthly", "shopper", "trial"]
    want = pd.DataFrame(
        {
            # the base term: the highest monthly rate among the covering terms.
            "holds_term": [1, 1, 0, 1, NAN, 1],
            "days_to_renewal": [92, 12, NAN, 14, NAN, 4],
            "renewal_within_30d": [0, 1, NAN, 1, NAN, 1],
            "renewal_within_90d": [0, 1, NAN, 1, NAN, 1],
            "billing_period_months": [12, 1, NAN, 1, NAN, 14 / DAYS_PER_MONTH],
            "subscription_tenure_days": [274, 51, 425, 77, NAN, 10],
            "n_terms": [1, 2, 1, 4, NAN, 1],
            "renewals": [0, 1, 0, 1, NAN, 0],
            "price": [240, 20, NAN, 20, NAN, 0],
            "mrr": [20, 20, NAN, 25, NAN, 0],
            "term_discount": [0.2, 0, NAN, 0.1, NAN, NAN],
            "seats": [10, 2, NAN, 3, NAN, 1],
            "n_addons": [0, 0, NAN, 1, NAN, 0],
            # monthly: pro at 02-15 (10 -> 20) and the add-on at 02-20 (20 -> 25) are upgrades.
            "upgrades": [0, 0, 0, 2, NAN, 0],
            "downgrades": [0, 1, 0, 0, NAN, 0],
            "plan_changes": [0, 1, 0, 2, NAN, 0],
            "notice_given": [1, 0, NAN, 0, NAN, 0],
            "days_to_noticed_end": [92, NAN, NAN, NAN, NAN, NAN],
            "on_trial": [0, 0, NAN, 0, NAN, 1],
            "trial_days_left": [NAN, NAN, NAN, NAN, NAN, 4],
        },
        index=got.index,
        dtype="float64",
    )
    assert_frame_equal(got[want.columns], want)
    assert got.loc[["annual", "gap", "monthly", "trial"], "plan"].tolist() == [
        "pro",
        "basic",
        "pro",
        "pro",
    ]
    assert got["plan"].isna()[["gone", "shopper"]].all()
    assert isinstance(got["plan"].dtype, pd.CategoricalDtype) and "plan" in CATEGORICAL_FEATURES
    # No sale before 03-01: spend undefined, as for any customer without an order.
    assert np.isnan(got.loc["annual", "spend_total"])


def test_usage_trends_per_seat_and_breadth(contracts: Tables) -> None:
    got = build_features(contracts, AS_OF).set_index("customer_id")
    # monthly sessions: 2 in the last 30 days; 2 in the 60 before (01-15, 12-20), 1 per 30 days.
    assert got.loc["monthly", "session_trend_30v60"] == pytest.approx((2 - 1) / (2 + 1))
    assert got.loc["monthly", "session_30d_per_seat"] == pytest.approx(2 / 3)
    assert got.loc["monthly", "payment_failed_30d_per_seat"] == pytest.approx(1 / 3)
    assert got.loc["monthly", "payment_failed_90d"] == 1.0
    # Any event name gets the columns: login_x once in 30 days, once 121 days ago.
    assert got.loc["annual", "login_x_trend_30v60"] == 1.0
    assert got.loc["annual", "login_x_30d_per_seat"] == pytest.approx(1 / 10)
    assert got["event_breadth_30d"].to_dict() == {
        "annual": 1.0,
        "gap": 0.0,
        "gone": 0.0,
        "monthly": 2.0,
        "shopper": 0.0,
        "trial": 0.0,
    }
    assert np.isnan(got.loc["shopper", "session_30d_per_seat"])  # no seats: no rate


def test_without_a_subscriptions_table_nothing_changes(contracts: Tables) -> None:
    plain = Tables(contracts.transactions, events=contracts.events)
    without = build_features(plain, AS_OF)
    with_terms = build_features(contracts, AS_OF).copy().set_index("customer_id")
    for column in ("holds_term", "mrr", "plan", "session_trend_30v60", "event_breadth_30d"):
        assert column not in without.columns
    # The customers of the plain table keep every value they had.
    kept = with_terms.loc[without["customer_id"], without.columns[1:]].reset_index()
    assert_frame_equal(kept, without)


def test_only_the_required_columns() -> None:
    table = terms(
        [
            ("a", "2023-06-01", "2024-06-01"),
            ("a", "2024-02-10", "2024-03-10"),  # a second product, no plan to name it
            ("b", "2024-02-20", "2024-03-05"),
        ],
        ["customer_id", "start_ts", "end_ts"],
    )
    assert term_months(table).tolist() == [12.0, 1.0, 14 / DAYS_PER_MONTH]
    tx = frame(customer_id=["a"], ts=ts("2024-01-01"), amount=[1.0])
    got = build_features(Tables(tx, subscriptions=table), AS_OF).set_index("customer_id")
    # Base term without prices: the earliest started.
    assert got["days_to_renewal"].tolist() == [92.0, 4.0]
    assert got["billing_period_months"].tolist() == [12.0, 14 / DAYS_PER_MONTH]
    assert got["n_addons"].tolist() == [1.0, 0.0]
    assert got["renewals"].tolist() == [1.0, 0.0]  # without plans every later term renews
    for column in ("plan", "price", "mrr", "seats", "upgrades", "notice_given", "on_trial"):
        assert column not in got.columns


def test_the_billing_period_column_wins_over_dates() -> None:
    table = terms(
        [("a", "2024-01-01", "2024-04-01", 90.0, 1.0)],
        ["customer_id", "start_ts", "end_ts", "amount", "billing_period_months"],
    )
    tx = frame(customer_id=["a"], ts=ts("2024-01-01"), amount=[1.0])
    got = build_features(Tables(tx, subscriptions=table), AS_OF)
    assert got["billing_period_months"].tolist() == [1.0]
    assert got["mrr"].tolist() == [90.0]
    derived = build_features(
        Tables(tx, subscriptions=table.drop(columns="billing_period_months")), AS_OF
    )
    assert derived["mrr"].tolist() == [30.0]


def test_a_notice_from_as_of_on_is_unknown(contracts: Tables) -> None:
    assert contracts.subscriptions is not None
    later = contracts.subscriptions.copy()
    later.loc[later["customer_id"] == "annual", "cancel_ts"] = pd.Timestamp(AS_OF)
    got = build_features(Tables(contracts.transactions, subscriptions=later), AS_OF)
    annual = got.set_index("customer_id").loc["annual"]
    assert annual["notice_given"] == 0.0 and np.isnan(annual["days_to_noticed_end"])
    before = pd.Timestamp(AS_OF) - pd.Timedelta(microseconds=1)
    later.loc[later["customer_id"] == "annual", "cancel_ts"] = before
    got = build_features(Tables(contracts.transactions, subscriptions=later), AS_OF)
    assert got.set_index("customer_id").loc["annual", "notice_given"] == 1.0


def test_a_term_reaching_as_of_exactly_is_held() -> None:
    table = terms(
        [("a", "2024-02-01", AS_OF), ("b", "2024-01-01", "2024-02-29")],
        ["customer_id", "start_ts", "end_ts"],
    )
    tx = frame(customer_id=["z"], ts=ts("2024-01-01"), amount=[1.0])
    got = build_features(Tables(tx, subscriptions=table), AS_OF).set_index("customer_id")
    assert list(got.index) == ["a", "z"]  # b's term ended the day before
    assert got.loc["a", "days_to_renewal"] == 0.0
    assert got.loc["a", "renewal_within_30d"] == 1.0


def test_no_term_known_yet_gives_nulls_not_errors(contracts: Tables) -> None:
    empty = Tables(contracts.transactions, subscriptions=CONTRACTS.iloc[:0])
    got = build_features(empty, AS_OF)
    assert got["holds_term"].isna().all() and got["plan"].isna().all()
    early = build_features(contracts, "2023-01-01")  # nothing started: no rows, the columns
    assert early.empty and {"holds_term", "mrr", "plan", "upgrades"} <= set(early.columns)


@dataclass(frozen=True)
class ArrayTables:
    """Tables as the online service passes them: dicts of numpy arrays, no DataFrames."""

    transactions: dict[str, np.ndarray]
    events: dict[str, np.ndarray] | None = None
    customers: dict[str, np.ndarray] | None = None
    subscriptions: dict[str, np.ndarray] | None = None


def arrays(table: pd.DataFrame) -> dict[str, np.ndarray]:
    return {
        name: np.asarray(values, dtype=object) if values.dtype == "str" else values.to_numpy()
        for name, values in table.items()
    }


def test_dict_columns_give_the_same_features(contracts: Tables) -> None:
    assert contracts.events is not None
    online = ArrayTables(
        arrays(contracts.transactions), arrays(contracts.events), None, arrays(CONTRACTS)
    )
    assert_frame_equal(
        pd.DataFrame(feature_columns(online, AS_OF)), build_features(contracts, AS_OF)
    )
