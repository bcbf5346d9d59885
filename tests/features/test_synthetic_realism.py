"""Tests of the generator's difficulties: noise, acausal churn, decaying cohorts and seasons."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

import features.synthetic as generate
import features.synthetic_orders as orders_module
from features.schema import Tables
from features.synthetic import generate_tables
from features.synthetic_events import draw_events
from features.synthetic_world import (
    LOYAL,
    ONE_TIME,
    VIP,
    Period,
    Population,
    Realism,
)

END = pd.Timestamp("2026-11-01")
DAY = pd.Timedelta(days=1)
N = 20_000
SEED = 11


@pytest.fixture(scope="module")
def world() -> Callable[..., Tables]:
    """`generate_tables(N, seed=SEED, **strengths)`, each variant generated once."""
    cache: dict[tuple[tuple[str, float], ...], Tables] = {}

    def build(**strengths: float) -> Tables:
        key = tuple(sorted(strengths.items()))
        if key not in cache:
            cache[key] = generate_tables(N, seed=SEED, **strengths)
        return cache[key]

    return build


def _hidden(
    n: int = N, seed: int = SEED, **strengths: float
) -> tuple[np.random.Generator, Period, Population]:
    """The generator's hidden population, drawn as `generate_tables` draws it."""
    realism = Realism(**strengths)
    rng = np.random.default_rng(seed)
    period = generate._period(END, 3.0, realism.seasonality)
    return rng, period, generate._draw_population(rng, n, period, realism)


def _orders(tables: Tables) -> pd.DataFrame:
    """One row per purchase order: customer, time, value and the customer's age at it (days)."""
    buys = tables.transactions[tables.transactions["amount"] > 0]
    orders = buys.groupby("order_id").agg(
        customer=("customer_id", "first"), ts=("ts", "first"), value=("amount", "sum")
    )
    orders["first"] = orders.groupby("customer")["ts"].transform("min")
    orders["age"] = (orders["ts"] - orders["first"]) / DAY
    return orders


def test_same_seed_and_strengths_give_identical_tables() -> None:
    strengths = {"noise": 0.5, "acausal_churn": 0.1, "cohort_decay": 2.0, "seasonality": 0.3}
    first = generate_tables(300, seed=5, **strengths)
    second = generate_tables(300, seed=5, **strengths)
    pd.testing.assert_frame_equal(first.transactions, second.transactions)
    assert first.events is not None and second.events is not None
    pd.testing.assert_frame_equal(first.events, second.events)
    assert not first.transactions.equals(generate_tables(300, seed=5).transactions)


@pytest.mark.parametrize(
    ("name", "value"),
    [("noise", -0.1), ("acausal_churn", 1.0), ("acausal_churn", -0.2), ("cohort_decay", np.inf)],
)
def test_rejects_strengths_out_of_range(name: str, value: float) -> None:
    strengths: dict[str, Any] = {name: value}
    with pytest.raises(ValueError, match=name):
        generate_tables(10, **strengths)


def _spend_per_day(orders: pd.DataFrame, start: str, stop: str) -> float:
    inside = orders["ts"].between(pd.Timestamp(start), pd.Timestamp(stop), inclusive="left")
    return float(orders.loc[inside, "value"].sum()) / (
        (pd.Timestamp(stop) - pd.Timestamp(start)) / DAY
    )


def _basket(orders: pd.DataFrame, start: str, stop: str) -> float:
    inside = orders["ts"].between(pd.Timestamp(start), pd.Timestamp(stop), inclusive="left")
    return float(orders.loc[inside, "value"].mean())


def _seasonal_index(orders: pd.DataFrame) -> pd.Series:
    """Spend per day of each month of 2025 over its centred 12-month average (the trend)."""
    monthly = orders.groupby(orders["ts"].dt.to_period("M"))["value"].sum()
    per_day = monthly / monthly.index.days_in_month
    trend = per_day.rolling(12, center=True).mean().rolling(2).mean().shift(-1)
    index = per_day / trend
    return index[pd.Period("2025-01", "M") : pd.Period("2025-12", "M")]


def test_december_peaks_and_summer_dips_in_monthly_spend(world: Callable[..., Tables]) -> None:
    # The business grows, so months are judged against their trend.
    seasonal = _seasonal_index(_orders(world()))
    assert seasonal.idxmax() == pd.Period("2025-12", "M")
    assert seasonal.idxmin().month in (6, 7, 8)
    assert seasonal.max() > 1.7
    assert seasonal[pd.Period("2025-07", "M")] < 0.85
    flat = _seasonal_index(_orders(world(seasonality=0.0)))
    assert flat.max() < 1.15


def test_a_window_holding_december_sees_more_spend(world: Callable[..., Tables]) -> None:
    # The 90 days up to New Year against the 90 days after them, when there are more customers.
    def holiday_over_after(orders: pd.DataFrame) -> float:
        holiday = _spend_per_day(orders, "2025-10-03", "2026-01-01")
        return holiday / _spend_per_day(orders, "2026-01-01", "2026-04-01")

    assert holiday_over_after(_orders(world())) > 1.3
    assert holiday_over_after(_orders(world(seasonality=0.0))) < 1.0


def test_december_baskets_are_larger(world: Callable[..., Tables]) -> None:
    seasonal, flat = _orders(world()), _orders(world(seasonality=0.0))
    ratio = _basket(seasonal, "2025-12-01", "2026-01-01") / _basket(
        seasonal, "2025-07-01", "2025-08-01"
    )
    flat_ratio = _basket(flat, "2025-12-01", "2026-01-01") / _basket(
        flat, "2025-07-01", "2025-08-01"
    )
    assert ratio > 1.25
    assert ratio > flat_ratio + 0.15


def _mature_over_young_orders(tables: Tables) -> float:
    """Orders at ages 540-720 days over orders at ages 0-180, of customers still buying at 720."""
    orders = _orders(tables)
    old = orders[orders["first"] < END - 800 * DAY]
    still_buying = old.groupby("customer")["age"].max() > 720
    old = old[old["customer"].isin(still_buying.index[still_buying])]
    young = old["age"].between(0, 180, inclusive="right").sum()
    mature = old["age"].between(540, 720, inclusive="right").sum()
    return float(mature / young)


def test_purchase_rates_decay_with_customer_age(world: Callable[..., Tables]) -> None:
    # The same survivors buy less in their second year than in their first half year.
    decaying = _mature_over_young_orders(world())
    steady = _mature_over_young_orders(world(cohort_decay=0.0))
    assert decaying < 0.7
    assert decaying < 0.8 * steady


def test_later_cohorts_hold_fewer_regulars() -> None:
    def regulars_early_minus_late(cohort_decay: float) -> float:
        _, _, people = _hidden(cohort_decay=cohort_decay)
        third = people.archetype.size // 3
        regular = np.isin(people.archetype, [LOYAL, VIP])
        return float(regular[:third].mean() - regular[-third:].mean())

    assert regulars_early_minus_late(1.0) > 0.05
    assert abs(regulars_early_minus_late(0.0)) < 0.02


@pytest.mark.parametrize("share", [0.0, 0.15, 0.3, 0.5])
def test_acausal_share_of_churn_is_as_configured(share: float) -> None:
    _, period, people = _hidden(acausal_churn=share)
    exits = (people.archetype != ONE_TIME) & (people.death < period.days)
    assert exits.sum() > 3000
    assert people.acausal[exits].mean() == pytest.approx(share, abs=0.03)
    assert not people.acausal[people.archetype == ONE_TIME].any()


def _rate_before_exit(
    events: pd.DataFrame, people: Population, customers: np.ndarray, lo: float, hi: float
) -> float:
    """Events per customer and 30 days, between `hi` and `lo` days before each exit."""
    before = people.death[events["customer"].to_numpy()] - events["t"].to_numpy()
    inside = (before > lo) & (before <= hi) & np.isin(events["customer"].to_numpy(), customers)
    return float(inside.sum()) / customers.size / (hi - lo) * 30


@pytest.mark.parametrize("event", ["session", "complaint"])
def test_acausal_exits_are_not_announced_by_events(event: str) -> None:
    rng, period, people = _hidden()
    rows = draw_events(rng, people, period)
    names = pd.Series(np.asarray(rows.columns["event"]))
    events = pd.DataFrame({"customer": rows.customer, "t": rows.t})[names.eq(event).to_numpy()]
    exits = (
        (people.archetype != ONE_TIME)
        & (people.death < period.days - 1)
        & (people.death - people.first_purchase > 300)
    )
    acausal = np.flatnonzero(exits & people.acausal)
    behavioural = np.flatnonzero(exits & ~people.acausal)
    assert acausal.size > 300 and behavioural.size > 300

    def last_weeks_over_before(customers: np.ndarray) -> float:
        late = _rate_before_exit(events, people, customers, 0, 60)
        return late / max(_rate_before_exit(events, people, customers, 60, 240), 1e-9)

    if event == "session":
        assert last_weeks_over_before(behavioural) < 0.3
        assert last_weeks_over_before(acausal) > 0.8
    else:
        assert _rate_before_exit(events, people, behavioural, 0, 60) > 0.05
        assert _rate_before_exit(events, people, acausal, 0, 60) < 0.02


def _customers_back_after_a_long_silence(tables: Tables) -> float:
    orders = _orders(tables).sort_values(["customer", "ts"])
    gap = orders.groupby("customer")["ts"].diff() / DAY
    return float((gap > 180).groupby(orders["customer"]).any().mean())


def test_some_customers_come_back_after_long_silences(world: Callable[..., Tables]) -> None:
    noisy = _customers_back_after_a_long_silence(world())
    assert noisy > 0.08
    assert noisy > 2 * _customers_back_after_a_long_silence(world(noise=0.0))


def test_order_values_are_heavy_tailed(world: Callable[..., Tables]) -> None:
    def tail(tables: Tables) -> float:
        values = _orders(tables)["value"]
        return float(values.quantile(0.999) / values.median())

    assert tail(world()) > 90
    assert tail(world()) > 1.3 * tail(world(noise=0.0))


def test_one_time_buyers_sometimes_come_back() -> None:
    rng, period, people = _hidden()
    customer, _ = orders_module.draw_orders(rng, people, period, Realism())
    orders = np.bincount(customer, minlength=people.archetype.size)
    one_time = people.archetype == ONE_TIME
    assert (orders[one_time] == 1).mean() > 0.8
    assert 0.02 < (orders[one_time] > 1).mean() < 0.2


def test_age_decay_maps_effort_to_age_and_back() -> None:
    age = np.array([0.0, 1.0, 100.0, 1000.0])
    effort = orders_module._age_effort(age, 240.0)
    assert np.all(np.diff(effort) > 0) and np.all(effort <= age)
    np.testing.assert_allclose(orders_module._age_at_effort(effort, 240.0), age, atol=1e-9)
    assert orders_module._age_effort(age, np.inf) is age
