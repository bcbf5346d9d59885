"""Tests of the synthetic data generator: contract, determinism and planted structure."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

import features.synthetic as generate
import features.synthetic_events as generate_events
import features.synthetic_world as world
from features.schema import CUSTOMERS, EVENTS, KNOWN_EVENTS, TRANSACTIONS, Tables, TableSpec
from features.synthetic import generate_tables

END = pd.Timestamp("2026-11-01")
DAY = pd.Timedelta(days=1)
# Large enough for the planted effects to stand far above noise, small enough to stay fast.
N_STRUCTURE = 20_000


@pytest.fixture(scope="module")
def small() -> Tables:
    return generate_tables(500, seed=3)


@pytest.fixture(scope="module")
def big() -> Tables:
    return generate_tables(N_STRUCTURE, seed=11)


# Each planted direct effect and the settings that switch it off. Archetypes make app use,
# content use and activity go together with loyalty anyway; only the gap over the run without
# the effect shows that the effect itself is planted.
COUNTERFACTUALS: dict[str, dict[str, object]] = {
    "content": {"HAZARD_CONTENT_USER": 1.0},
    "channel": {"HAZARD_BY_PURCHASE_CHANNEL": np.ones(3)},
    "decline": {"DECLINE_FACTOR": 1.0},
    "upgrade": {"UPGRADE_PRICE": 1.0},
}


@pytest.fixture(scope="module")
def without() -> Callable[[str], Tables]:
    """The big population generated again with one named effect switched off."""
    cache: dict[str, Tables] = {}

    def build(effect: str) -> Tables:
        if effect not in cache:
            with pytest.MonkeyPatch.context() as patch:
                for name, value in COUNTERFACTUALS[effect].items():
                    # Each generator module holds its own reference to the world's value.
                    for module in (world, generate, generate_events):
                        if hasattr(module, name):
                            patch.setattr(module, name, value)
                cache[effect] = generate_tables(N_STRUCTURE, seed=11)
        return cache[effect]

    return build


def _frames(tables: Tables) -> dict[str, pd.DataFrame]:
    assert tables.customers is not None
    assert tables.events is not None
    return {
        "transactions": tables.transactions,
        "customers": tables.customers,
        "events": tables.events,
    }


def _inactive_at_end(transactions: pd.DataFrame) -> pd.Series:
    """No transaction in the last 90 days, for customers whose first one is 180+ days old."""
    by_customer = transactions.groupby("customer_id")["ts"]
    first, last = by_customer.min(), by_customer.max()
    inactive = last < END - 90 * DAY
    return inactive[first < END - 180 * DAY]


def _churn_after(transactions: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Churn label as of `as_of` for customers who bought in the 90 days before it."""
    buys = transactions[transactions["amount"] > 0]
    recent = buys[(buys["ts"] < as_of) & (buys["ts"] >= as_of - 90 * DAY)]
    later = buys[(buys["ts"] >= as_of) & (buys["ts"] < as_of + 90 * DAY)]
    population = pd.Index(recent["customer_id"].unique())
    return pd.Series(~population.isin(later["customer_id"].unique()), index=population)


def _rates(label: pd.Series, customers_with: pd.Series | pd.Index) -> tuple[float, float]:
    flag = label.index.isin(pd.Index(customers_with))
    assert 50 <= flag.sum() <= len(flag) - 50, "both groups need enough customers"
    return float(label[flag].mean()), float(label[~flag].mean())


def test_same_seed_gives_identical_tables() -> None:
    first, second = _frames(generate_tables(300, seed=5)), _frames(generate_tables(300, seed=5))
    for name, frame in first.items():
        pd.testing.assert_frame_equal(frame, second[name])


def test_different_seed_gives_different_tables() -> None:
    first, second = _frames(generate_tables(300, seed=5)), _frames(generate_tables(300, seed=6))
    for name, frame in first.items():
        assert not frame.equals(second[name]), name


@pytest.mark.parametrize("spec", [TRANSACTIONS, CUSTOMERS, EVENTS], ids=lambda s: s.name)
def test_contract_columns_and_dtypes(small: Tables, spec: TableSpec) -> None:
    frame = _frames(small)[spec.name]
    assert list(frame.columns) == spec.column_names
    expected = {"id": "str", "string": "str", "timestamp": "datetime64[us]", "float": "float64"}
    for column in spec.columns:
        assert frame[column.name].dtype == expected[column.kind], column.name
    assert frame["customer_id"].notna().all()


def test_ids_are_zero_padded(small: Tables) -> None:
    assert small.customers is not None
    assert small.customers["customer_id"].str.fullmatch(r"C\d{7}").all()
    assert small.transactions["order_id"].str.fullmatch(r"O\d{8}").all()
    assert generate_tables(1, seed=0).transactions["customer_id"].iloc[0] == "C0000001"


@pytest.mark.parametrize(
    ("end", "years"), [("2026-11-01", 3.0), ("2024-03-15 12:30", 1.0), ("2025-01-01", 0.25)]
)
def test_all_timestamps_are_before_end_and_transactions_inside_period(
    end: str, years: float
) -> None:
    tables = generate_tables(400, seed=1, end=end, years=years)
    assert tables.events is not None
    stop = pd.Timestamp(end)
    assert (tables.transactions["ts"] < stop).all()
    assert (tables.events["ts"] < stop).all()
    start = stop - pd.Timedelta(days=365.25 * years)
    assert (tables.transactions["ts"] >= start).all()
    assert (tables.events["ts"] >= start).all()


def test_rejects_empty_population_and_period() -> None:
    with pytest.raises(ValueError, match="n_customers"):
        generate_tables(0)
    with pytest.raises(ValueError, match="years"):
        generate_tables(10, years=0)


def test_customers_are_unique_and_cover_every_table(small: Tables) -> None:
    frames = _frames(small)
    ids = frames["customers"]["customer_id"]
    assert ids.is_unique
    assert len(ids) == 500
    assert set(frames["transactions"]["customer_id"]) == set(ids)
    assert set(frames["events"]["customer_id"]) <= set(ids)


def test_signup_is_at_or_shortly_before_first_purchase(big: Tables) -> None:
    assert big.customers is not None
    first = big.transactions.groupby("customer_id")["ts"].min()
    signup = big.customers.set_index("customer_id")["signup_ts"]
    lag = (first - signup.reindex(first.index)) / DAY
    assert (lag >= 0).all()
    assert (lag <= 60).all()
    assert (lag == 0).mean() > 0.2


def test_rows_come_in_no_particular_order(big: Tables) -> None:
    tx = big.transactions
    assert not tx["ts"].is_monotonic_increasing
    assert not tx["customer_id"].is_monotonic_increasing
    assert not tx.sort_values(["customer_id", "ts"]).index.equals(tx.index)


def test_volume_is_about_twenty_transaction_rows_per_customer(big: Tables) -> None:
    assert big.events is not None
    tx_per_customer = len(big.transactions) / N_STRUCTURE
    assert 15 <= tx_per_customer <= 25
    assert 5 <= len(big.events) / N_STRUCTURE <= tx_per_customer * 1.1


def test_refunds_are_few_and_follow_a_purchase_of_the_same_order(big: Tables) -> None:
    tx = big.transactions
    refunds = tx[tx["amount"] < 0]
    assert 0.005 <= len(refunds) / len(tx) <= 0.05
    purchases = tx[tx["amount"] > 0]
    bought = purchases.groupby("order_id").agg(customer=("customer_id", "first"), ts=("ts", "max"))
    matched = bought.reindex(refunds["order_id"])
    assert (matched["customer"].to_numpy() == refunds["customer_id"].to_numpy()).all()
    assert (matched["ts"].to_numpy() < refunds["ts"].to_numpy()).all()
    first_purchase = purchases.groupby("customer_id")["ts"].min()
    assert (refunds["ts"].to_numpy() > first_purchase[refunds["customer_id"]].to_numpy()).all()


def test_discounts_are_non_negative_and_margins_a_share_of_amount(big: Tables) -> None:
    tx = big.transactions
    assert (tx["discount"] >= 0).all()
    assert 0.05 <= (tx["discount"] > 0).mean() <= 0.5
    sizeable = tx[tx["amount"].abs() >= 5]
    rate = sizeable["margin"] / sizeable["amount"]
    assert rate.between(0.19, 0.46).all()


def test_orders_have_one_to_four_lines_of_one_customer_at_one_time(big: Tables) -> None:
    purchases = big.transactions[big.transactions["amount"] > 0]
    orders = purchases.groupby("order_id").agg(
        lines=("ts", "size"), customers=("customer_id", "nunique"), times=("ts", "nunique")
    )
    assert orders["lines"].between(1, 4).all()
    assert set(orders["lines"]) == {1, 2, 3, 4}
    assert (orders["customers"] == 1).all()
    assert (orders["times"] == 1).all()


def test_vocabularies(big: Tables) -> None:
    assert big.customers is not None
    tx, customers = big.transactions, big.customers
    assert set(tx["channel"].unique()) == {"app", "web", "store"}
    assert set(tx["category"].unique()) == set(world.CATEGORIES)
    segments = {"student", "parent", "tech_fan", "professional", "retiree"}
    assert set(customers["segment"].unique()) == segments
    assert customers["acquisition_channel"].nunique() >= 4
    assert customers["region"].nunique() >= 4


def test_events_cover_known_names_and_a_custom_one(big: Tables) -> None:
    assert big.events is not None
    names = set(big.events["event"].unique())
    assert set(KNOWN_EVENTS) <= names
    custom = names - set(KNOWN_EVENTS)
    assert custom
    assert (big.events["event"].isin(custom)).sum() > N_STRUCTURE * 0.1


@pytest.mark.parametrize(("event", "low", "high"), [("nps", 0, 10), ("csat", 1, 5), ("ces", 1, 7)])
def test_survey_scores_are_integers_in_range(big: Tables, event: str, low: int, high: int) -> None:
    assert big.events is not None
    values = big.events.loc[big.events["event"] == event, "value"]
    assert len(values) > 100
    assert values.notna().all()
    assert (values == np.round(values)).all()
    assert values.between(low, high).all()
    assert values.nunique() >= high - low - 1


def test_messaging_events_carry_their_channel(big: Tables) -> None:
    assert big.events is not None
    events = big.events
    expected = {
        "email_open": "email",
        "email_click": "email",
        "sms_click": "sms",
        "push_open": "push",
    }
    for name, channel in expected.items():
        assert (events.loc[events["event"] == name, "channel"] == channel).all(), name
    assert events.loc[events["event"] == "support_ticket", "channel"].isna().all()


def test_one_time_buyers_exist(big: Tables) -> None:
    orders = big.transactions.groupby("customer_id")["order_id"].nunique()
    assert 0.15 <= (orders == 1).mean() <= 0.5
    assert orders.quantile(0.9) >= 10


def test_more_orders_in_november_and_december(big: Tables) -> None:
    orders = big.transactions.drop_duplicates("order_id")

    def per_day(start: str, stop: str) -> float:
        inside = orders["ts"].between(pd.Timestamp(start), pd.Timestamp(stop), inclusive="left")
        return inside.sum() / ((pd.Timestamp(stop) - pd.Timestamp(start)) / DAY)

    holidays = per_day("2025-11-01", "2026-01-01")
    assert holidays > 1.3 * per_day("2025-09-01", "2025-11-01")
    assert holidays > 1.3 * per_day("2026-01-01", "2026-03-01")


def _content_gap(tables: Tables) -> float:
    assert tables.events is not None
    viewers = tables.events.loc[tables.events["event"] == "content_view", "customer_id"]
    with_content, without = _rates(_inactive_at_end(tables.transactions), viewers)
    return without - with_content


def test_content_viewers_stay_active_more_often(
    big: Tables, without: Callable[[str], Tables]
) -> None:
    # Acausal churn, stray orders and noise blur "inactive at the end"; the planted effect is
    # the gap over the run without it.
    assert _content_gap(big) > 0.15
    assert _content_gap(big) > _content_gap(without("content")) + 0.04


def _app_web_gap(tables: Tables) -> float:
    inactive = _inactive_at_end(tables.transactions)
    lines = tables.transactions.groupby(["customer_id", "channel"]).size().unstack(fill_value=0)
    by_channel = inactive.groupby(lines.idxmax(axis=1).reindex(inactive.index)).mean()
    return float(by_channel["web"] - by_channel["app"])


def test_app_customers_churn_less_than_web_customers(
    big: Tables, without: Callable[[str], Tables]
) -> None:
    assert _app_web_gap(big) > 0.1
    assert _app_web_gap(big) > _app_web_gap(without("channel")) + 0.05


def test_customers_with_unresolved_tickets_churn_more(big: Tables) -> None:
    assert big.events is not None
    counts = big.events.groupby(["customer_id", "event"]).size().unstack(fill_value=0)
    unresolved = counts.index[counts["support_ticket"] > counts["ticket_resolved"]]
    with_open, without = _rates(_inactive_at_end(big.transactions), unresolved)
    # Long lives gather more routine tickets, some left open, so the raw gap is small (it is
    # about -0.25 with no hazard after a failure); acausal churn and noise shrink it further.
    assert with_open > without + 0.02


def test_referrers_are_frequent_regular_buyers(big: Tables) -> None:
    assert big.events is not None
    purchases = big.transactions[big.transactions["amount"] > 0]
    summary = purchases.groupby("customer_id").agg(
        first=("ts", "min"), last=("ts", "max"), orders=("order_id", "nunique")
    )
    span = (summary["last"] - summary["first"]) / DAY
    # Per month of purchasing life, so that merely staying longer does not count.
    monthly = ((summary["orders"] - 1) / span * 30.4)[span >= 180]
    referrers = big.events.loc[big.events["event"] == "referral", "customer_id"]
    is_referrer = monthly.index.isin(pd.Index(referrers))
    assert monthly[is_referrer].median() > 1.5 * monthly[~is_referrer].median()


def test_discount_driven_customers_churn_more(big: Tables) -> None:
    purchases = big.transactions[big.transactions["amount"] > 0]
    discounted = (purchases["discount"] > 0).groupby(purchases["customer_id"]).agg(["mean", "size"])
    # Enough lines that a high discounted share is a habit, not the luck of a short history.
    share = discounted.loc[discounted["size"] >= 8, "mean"]
    inactive = _inactive_at_end(big.transactions).reindex(share.index).dropna().astype(bool)
    share = share.reindex(inactive.index)
    assert (share > 0.5).sum() >= 50
    # About 0 when the discount seekers' base hazard is cut from 0.9 to 0.3 a year.
    assert inactive[share > 0.5].mean() > inactive[share < 0.2].mean() + 0.08


def _warning_gap(tables: Tables, warning: str, days_before_end: int) -> float:
    """Churn rate after a cutoff with the warning sign before it, minus without."""
    assert tables.events is not None
    as_of = END - days_before_end * DAY
    churn = _churn_after(tables.transactions, as_of)
    events = tables.events
    window = events[(events["ts"] < as_of) & (events["ts"] >= as_of - 90 * DAY)]
    if warning == "complaint":
        flagged = window.loc[window["event"] == "complaint", "customer_id"]
    elif warning == "detractor":
        flagged = window.loc[(window["event"] == "nps") & (window["value"] <= 6), "customer_id"]
    else:
        recent = window[(window["event"] == "session") & (window["ts"] >= as_of - 30 * DAY)]
        flagged = churn.index.difference(pd.Index(recent["customer_id"].unique())).to_series()
    with_sign, without = _rates(churn, flagged)
    return with_sign - without


@pytest.mark.parametrize("days_before_end", [180, 365])
@pytest.mark.parametrize("warning", ["complaint", "detractor", "no_session"])
def test_warning_signs_before_a_cutoff_precede_churn_after_it(
    big: Tables, warning: str, days_before_end: int
) -> None:
    # What a point-in-time model sees before the cutoff must predict churn after it.
    assert _warning_gap(big, warning, days_before_end) > 0.1


@pytest.mark.parametrize("days_before_end", [180, 365])
def test_sessions_fade_before_customers_leave(
    big: Tables, without: Callable[[str], Tables], days_before_end: int
) -> None:
    planted = _warning_gap(big, "no_session", days_before_end)
    assert planted > _warning_gap(without("decline"), "no_session", days_before_end) + 0.025


def _spend_jumps(transactions: pd.DataFrame) -> float:
    """Share of 6+-order customers whose later orders cost over twice their earlier ones."""
    purchases = transactions[transactions["amount"] > 0]
    orders = (
        purchases.groupby(["customer_id", "order_id"])
        .agg(ts=("ts", "first"), value=("amount", "sum"))
        .reset_index()
        .sort_values(["customer_id", "ts"])
    )
    orders["k"] = orders.groupby("customer_id").cumcount()
    orders["n"] = orders.groupby("customer_id")["k"].transform("size")
    orders = orders[orders["n"] >= 6]
    later = orders["k"] >= orders["n"] // 2
    early_median = orders[~later].groupby("customer_id")["value"].median()
    late_median = orders[later].groupby("customer_id")["value"].median()
    return float((late_median / early_median > 2).mean())


def test_some_customers_upgrade_to_more_expensive_purchases(
    big: Tables, without: Callable[[str], Tables]
) -> None:
    jumps = _spend_jumps(big.transactions)
    assert jumps > _spend_jumps(without("upgrade").transactions) + 0.025
