"""Tests of the synthetic subscription business: contract, determinism and planted churn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from features.schema import CUSTOMERS, Tables
from features.synthetic_subscriptions import (
    ADDONS,
    PLANS,
    SUBSCRIPTION_COLUMNS,
    USAGE_EVENTS,
    generate_subscription_tables,
)
from features.synthetic_world import DAYS_PER_MONTH

END = pd.Timestamp("2026-11-01")
DAY = pd.Timedelta(days=1)
GRACE = 7 * DAY
# Enough active subscribers at a cutoff (about 2,500) for the lapse share to be stable.
N_STRUCTURE = 6000


@pytest.fixture(scope="module")
def small() -> Tables:
    return generate_subscription_tables(400, seed=3)


@pytest.fixture(scope="module")
def big() -> Tables:
    return generate_subscription_tables(N_STRUCTURE, seed=11)


def _subscriptions(tables: Tables) -> pd.DataFrame:
    assert tables.subscriptions is not None
    return tables.subscriptions


def _events(tables: Tables) -> pd.DataFrame:
    assert tables.events is not None
    return tables.events


def _lapse_labels(subscriptions: pd.DataFrame, cutoff: pd.Timestamp) -> pd.Series:
    """Per customer with a term covering `cutoff`: no term covers some day of the next 90 days.

    Terms of a customer are merged when the gap between them is at most GRACE.
    """
    terms = subscriptions.sort_values(["customer_id", "start_ts"])
    reach = terms.groupby("customer_id")["end_ts"].cummax()
    previous = reach.groupby(terms["customer_id"]).shift()
    block = (previous.isna() | (terms["start_ts"] > previous + GRACE)).cumsum()
    blocks = terms.groupby(block).agg(
        customer_id=("customer_id", "first"), lo=("start_ts", "min"), hi=("end_ts", "max")
    )
    covering = blocks[(blocks["lo"] <= cutoff) & (blocks["hi"] > cutoff)]
    return (covering.set_index("customer_id")["hi"] < cutoff + 90 * DAY).rename("lapsed")


def test_same_seed_same_tables_other_seed_other_tables(small: Tables) -> None:
    again = generate_subscription_tables(400, seed=3)
    other = generate_subscription_tables(400, seed=4)
    for name in ("subscriptions", "transactions", "customers", "events"):
        pd.testing.assert_frame_equal(getattr(small, name), getattr(again, name))
    assert not _subscriptions(small).equals(_subscriptions(other))


def test_subscriptions_follow_the_contract(small: Tables) -> None:
    subs = _subscriptions(small)
    assert list(subs.columns) == SUBSCRIPTION_COLUMNS
    for column in ("customer_id", "plan"):
        assert pd.api.types.is_string_dtype(subs[column]) and subs[column].notna().all()
    for column in ("start_ts", "end_ts", "cancel_ts"):
        assert subs[column].dtype == "datetime64[us]"
    for column in ("amount", "discount", "quantity"):
        assert subs[column].dtype == np.float64
    assert subs["billing_period_months"].dtype == np.int64
    assert subs["trial"].dtype == bool
    assert set(subs["plan"]) <= {*PLANS, *ADDONS}
    assert set(subs["billing_period_months"]) <= {1, 6, 12}
    assert (subs["end_ts"] > subs["start_ts"]).all()
    assert (subs["start_ts"] < END).all()
    assert subs["discount"].between(0, 1).all() and (subs["quantity"] >= 1).all()
    noticed = subs[subs["cancel_ts"].notna()]
    assert len(noticed) > 0
    assert (noticed["cancel_ts"] <= noticed["end_ts"]).all()
    assert (noticed["cancel_ts"] >= noticed["start_ts"]).all()
    assert (noticed["cancel_ts"] < END).all()
    trials = subs[subs["trial"]]
    assert len(trials) > 0 and (trials["amount"] == 0).all()
    assert (subs.loc[~subs["trial"], "amount"] > 0).all()


def test_terms_of_one_customer_and_plan_do_not_overlap(small: Tables) -> None:
    subs = _subscriptions(small).sort_values(["customer_id", "plan", "start_ts"])
    previous_end = subs.groupby(["customer_id", "plan"])["end_ts"].shift()
    assert not (subs["start_ts"] < previous_end).any()
    # The base plan runs one term at a time too, whatever the plan changes.
    base = _subscriptions(small)
    base = base[base["plan"].isin(PLANS)].sort_values(["customer_id", "start_ts"])
    assert not (base["start_ts"] < base.groupby("customer_id")["end_ts"].shift()).any()


def test_add_ons_run_alongside_a_paid_base_term(big: Tables) -> None:
    subs = _subscriptions(big)
    addons = subs[subs["plan"].isin(ADDONS)]
    base = subs[subs["plan"].isin(PLANS)]
    assert len(addons) > 0
    matched = addons.merge(base, on=["customer_id", "start_ts", "end_ts"], suffixes=("", "_b"))
    assert len(matched) == len(addons)
    assert not matched["trial_b"].any()


def test_customers_and_transactions_match_the_terms(small: Tables) -> None:
    subs = _subscriptions(small)
    customers = small.customers
    assert customers is not None
    assert list(customers.columns) == CUSTOMERS.column_names
    first_start = subs.groupby("customer_id")["start_ts"].min()
    pd.testing.assert_series_equal(
        customers.set_index("customer_id")["signup_ts"], first_start, check_names=False
    )
    paid = subs[~subs["trial"]]
    tx = small.transactions
    assert (tx["ts"] < END).all() and (tx["amount"] > 0).all()
    # One payment per paid term, at its start or late after a failed one; none for trials.
    assert len(tx) <= len(paid)
    assert len(tx) >= (paid["start_ts"] < END - 15 * DAY).sum()
    assert set(tx["category"]) <= {*PLANS, *ADDONS}
    settled = paid.loc[paid["start_ts"] < END - 15 * DAY, "amount"].sum()
    assert settled <= tx["amount"].sum() <= paid["amount"].sum()


def test_events_have_string_names_and_survey_ranges(small: Tables) -> None:
    events = _events(small)
    assert list(events.columns) == ["customer_id", "ts", "event", "value"]
    assert pd.api.types.is_string_dtype(events["event"]) and events["event"].notna().all()
    assert (events["ts"] < END).all()
    names = set(events["event"])
    assert {*USAGE_EVENTS, "seat_invite", "support_ticket", "nps", "payment_failed"} <= names
    nps = events.loc[events["event"] == "nps", "value"]
    assert nps.between(0, 10).all() and (nps == nps.round()).all()
    per_customer = events.groupby("customer_id").size()
    assert 10 < per_customer.mean() < 500


def test_annual_terms_run_their_full_length_and_renew_without_a_gap(big: Tables) -> None:
    subs = _subscriptions(big)
    base = subs[subs["plan"].isin(PLANS)].sort_values(["customer_id", "start_ts"])
    paid = base[~base["trial"]]
    days = (paid["end_ts"] - paid["start_ts"]) / DAY
    assert np.allclose(days, paid["billing_period_months"] * DAYS_PER_MONTH, atol=1e-4)
    next_start = base.groupby("customer_id")["start_ts"].shift(-1)
    annual = (base["billing_period_months"] == 12) & ~base["trial"] & next_start.notna()
    gaps = (next_start[annual] - base.loc[annual, "end_ts"]) / DAY
    assert annual.sum() > 50
    # Renewed annual subscribers continue at the end of the term; a gap is a lapse and a
    # comeback, which only a churn at the renewal makes.
    assert ((gaps == 0) | (gaps > 30)).all()
    assert (gaps == 0).mean() > 0.9


@pytest.mark.parametrize("months_before_end", [6, 12])
def test_a_few_percent_of_active_subscribers_lapse_within_90_days(
    big: Tables, months_before_end: int
) -> None:
    cutoff = END - pd.Timedelta(days=round(months_before_end * DAYS_PER_MONTH))
    lapsed = _lapse_labels(_subscriptions(big), cutoff)
    assert len(lapsed) > 1500
    assert 0.03 <= lapsed.mean() <= 0.10


def test_churn_follows_usage_per_seat_but_not_perfectly(big: Tables) -> None:
    cutoff = END - pd.Timedelta(days=183)
    subs = _subscriptions(big)
    lapsed = _lapse_labels(subs, cutoff)
    current = subs[
        subs["plan"].isin(PLANS) & (subs["start_ts"] <= cutoff) & (subs["end_ts"] > cutoff)
    ]
    seats = current.groupby("customer_id")["quantity"].last()
    events = _events(big)
    usage = events[
        events["event"].isin(USAGE_EVENTS)
        & (events["ts"] < cutoff)
        & (events["ts"] >= cutoff - 90 * DAY)
    ]
    counts = usage.groupby("customer_id").size().reindex(lapsed.index, fill_value=0)
    per_seat = counts / seats.reindex(lapsed.index)
    assert per_seat[lapsed].mean() < 0.8 * per_seat[~lapsed].mean()
    auc = roc_auc_score(lapsed, -per_seat)
    # Usage tells, but acausal churn, failed cards and price changes keep it far from certain.
    assert 0.6 < auc < 0.85


def test_events_per_seat_sets_the_amount_of_usage() -> None:
    few = _events(generate_subscription_tables(1500, seed=5, events_per_seat=0.5))
    many = _events(generate_subscription_tables(1500, seed=5, events_per_seat=2.0))
    ratio = many["event"].isin(USAGE_EVENTS).sum() / few["event"].isin(USAGE_EVENTS).sum()
    assert 3.0 < ratio < 5.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_customers": 0},
        {"n_customers": 10, "years": 0},
        {"n_customers": 10, "events_per_seat": 0},
        {"n_customers": 10, "acausal_churn": 1.0},
        {"n_customers": 10, "trial_share": 0.9},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        generate_subscription_tables(**kwargs)  # type: ignore[arg-type]


def test_cli_generate_subscription_writes_a_subscriptions_file(tmp_path: Path) -> None:
    from vafa.cli.app import app

    out = tmp_path / "data"
    result = CliRunner().invoke(
        app,
        ["generate", "--business", "subscription", "--customers", "200", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    subs = pd.read_parquet(out / "subscriptions.parquet")
    assert list(subs.columns) == SUBSCRIPTION_COLUMNS and len(subs) >= 200
    assert subs["customer_id"].nunique() == 200
    for name in ("transactions", "customers", "events"):
        assert (out / f"{name}.parquet").exists()
    refused = CliRunner().invoke(app, ["generate", "--business", "bakery", "--out", str(out)])
    assert refused.exit_code == 2
