"""Point-in-time correctness: rows at or after as_of never change a feature or a snapshot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from features.build import build_features, build_rfm_summary
from features.labels import (
    CHURN_DEFINITIONS,
    ChurnDefinition,
    build_training_set,
    snapshot_cutoffs,
)
from features.schema import KNOWN_EVENTS, Tables
from features.synthetic import generate_tables

BASE = generate_tables(60, seed=7, end="2026-01-01", years=1.5)
AS_OFS = list(pd.date_range("2025-03-01", "2025-12-01", freq="17D"))
PLANS = {"basic": 10.0, "pro": 30.0, "seats-pack": 5.0}


def subscription_terms(tables: Tables, seed: int = 3) -> pd.DataFrame:
    """Chains of terms: monthly, quarterly, annual; gaps, plan changes, add-ons, notices, trials."""
    rng = np.random.default_rng(seed)
    rows = []
    ids = sorted(tables.transactions["customer_id"].unique())
    for who in [*ids[:40], "SUB-ONLY-1", "SUB-ONLY-2"]:
        start = pd.Timestamp("2024-06-01") + pd.Timedelta(days=int(rng.integers(0, 200)))
        trial = bool(rng.random() < 0.3)
        while start < pd.Timestamp("2026-03-01") and rng.random() < 0.93:
            months = 0.5 if trial else int(rng.choice([1, 1, 3, 12]))
            end = start + pd.Timedelta(days=round(30.4 * months))
            plan = str(rng.choice(["basic", "pro"]))
            cancel = (
                end - pd.Timedelta(days=int(rng.integers(1, 20))) if rng.random() < 0.1 else None
            )
            price = 0.0 if trial else PLANS[plan] * max(months, 1) * (1 - rng.random() * 0.2)
            rows.append(
                (
                    who,
                    start,
                    end,
                    plan,
                    price,
                    months,
                    rng.random() * 0.2,
                    float(rng.integers(1, 12)),
                    cancel,
                    trial,
                )
            )
            if rng.random() < 0.2:  # an add-on alongside
                rows.append(
                    (
                        who,
                        start + pd.Timedelta(days=3),
                        end,
                        "seats-pack",
                        5.0,
                        1,
                        0.0,
                        2.0,
                        None,
                        False,
                    )
                )
            start = end + pd.Timedelta(days=int(rng.choice([0, 0, 0, 3, 12])))
            trial = False
    return terms_frame(rows)


def terms_frame(rows: Sequence[tuple[object, ...]]) -> pd.DataFrame:
    """A subscriptions table of rows, with the loader's dtypes."""
    columns = ["customer_id", "start_ts", "end_ts", "plan", "amount", "billing_period_months"]
    table = pd.DataFrame(rows, columns=[*columns, "discount", "quantity", "cancel_ts", "trial"])
    for name in ("customer_id", "plan"):
        table[name] = table[name].astype("str")
    for name in ("start_ts", "end_ts", "cancel_ts"):
        table[name] = pd.to_datetime(table[name]).astype("datetime64[us]")
    table["billing_period_months"] = table["billing_period_months"].astype("float64")
    table["trial"] = table["trial"].astype("bool")
    return table


SUBSCRIBED = replace(BASE, subscriptions=subscription_terms(BASE))


def tamper_with_future(tables: Tables, as_of: pd.Timestamp, data: st.DataObject) -> Tables:
    """Drop, alter and add rows at or after `as_of`, and shuffle row order; the past stays."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    ids = [*tables.transactions["customer_id"].unique().tolist(), "NEW1", "NEW2"]

    def tamper(table: pd.DataFrame, new_rows: pd.DataFrame) -> pd.DataFrame:
        future = table["ts"] >= as_of
        keep = ~future | (rng.random(len(table)) < 0.5)
        out = table[keep].copy()
        altered = out["ts"] >= as_of
        if "amount" in out:
            out.loc[altered, "amount"] = out.loc[altered, "amount"] * -3 + 1
        if "event" in out:
            out.loc[altered, "event"] = "payment_late"
        out = pd.concat([out, new_rows.astype(out.dtypes.to_dict())], ignore_index=True)
        return out.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)

    n = data.draw(st.integers(1, 30), label="new rows")
    offsets = data.draw(
        st.lists(st.integers(0, 400 * 24), min_size=n, max_size=n), label="hours after as_of"
    )
    when = as_of + pd.to_timedelta(offsets, unit="h")
    who = rng.choice(ids, n)
    new_tx = pd.DataFrame(
        {
            "customer_id": who,
            "ts": when,
            "amount": rng.normal(50, 80, n).round(2),
            "order_id": [f"F{i}" for i in range(n)],
            "margin": rng.normal(10, 5, n),
            "category": rng.choice(["books", "a-new-category"], n),
            "discount": rng.random(n) * 3,
            "channel": rng.choice(["app", "web", "kiosk"], n),
        }
    )
    events = rng.choice([*KNOWN_EVENTS, "a_never_seen_event"], n)
    new_ev = pd.DataFrame(
        {
            "customer_id": who,
            "ts": when,
            "event": events,
            "value": rng.integers(0, 6, n).astype(float),
            "channel": rng.choice(["email", "sms"], n),
        }
    )
    assert tables.events is not None
    subscriptions = tables.subscriptions
    if subscriptions is not None:
        subscriptions = tamper_with_future_terms(subscriptions, as_of, rng, who, when)
    return replace(
        tables,
        transactions=tamper(tables.transactions, new_tx),
        events=tamper(tables.events, new_ev),
        subscriptions=subscriptions,
    )


def tamper_with_future_terms(
    terms: pd.DataFrame,
    as_of: pd.Timestamp,
    rng: np.random.Generator,
    who: np.ndarray,
    when: pd.DatetimeIndex,
) -> pd.DataFrame:
    """Future terms dropped, altered and added, notices from `as_of` on given; the past stays.

    Older terms without a notice get one at or after `as_of`; rows are shuffled.
    """
    future = terms["start_ts"] >= as_of
    out = terms[~future | (rng.random(len(terms)) < 0.5)].copy()
    altered = out["start_ts"] >= as_of
    out.loc[altered, "end_ts"] = out.loc[altered, "end_ts"] + pd.Timedelta(days=40)
    out.loc[altered, "amount"] = out.loc[altered, "amount"] * 7
    out.loc[altered, "plan"] = "a-new-plan"
    noticed = out["cancel_ts"].isna() & (rng.random(len(out)) < 0.4)
    offsets = pd.to_timedelta(rng.integers(0, 200 * 24, len(out)), unit="h")
    out.loc[noticed, "cancel_ts"] = (as_of + offsets)[noticed.to_numpy()]
    later = out["cancel_ts"] >= as_of
    out.loc[later, "cancel_ts"] = (as_of + offsets)[later.to_numpy()]
    n = len(who)
    new = terms_frame(
        [
            (
                who[i],
                when[i],
                when[i] + pd.Timedelta(days=30),
                "pro",
                99.0,
                1,
                0.5,
                50.0,
                when[i] + pd.Timedelta(days=1),
                bool(i % 2),
            )
            for i in range(n)
        ]
    )
    out = pd.concat([out, new], ignore_index=True)
    return out.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), as_of=st.sampled_from(AS_OFS))
def test_features_ignore_rows_at_or_after_as_of(data: st.DataObject, as_of: pd.Timestamp) -> None:
    tampered = tamper_with_future(BASE, as_of, data)
    assert_frame_equal(build_features(tampered, as_of), build_features(BASE, as_of))
    assert_frame_equal(build_rfm_summary(tampered, as_of), build_rfm_summary(BASE, as_of))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), as_of=st.sampled_from(AS_OFS))
def test_subscription_features_ignore_what_starts_or_is_noticed_from_as_of(
    data: st.DataObject, as_of: pd.Timestamp
) -> None:
    tampered = tamper_with_future(SUBSCRIBED, as_of, data)
    assert tampered.subscriptions is not None and SUBSCRIBED.subscriptions is not None
    assert not tampered.subscriptions["start_ts"].lt(as_of).all()  # the future is there
    assert_frame_equal(build_features(tampered, as_of), build_features(SUBSCRIBED, as_of))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_training_set_never_reads_past_its_date(data: st.DataObject) -> None:
    as_of = pd.Timestamp("2025-10-01")
    cutoffs = snapshot_cutoffs(as_of, label_days=90, n_snapshots=3, spacing_days=60)
    tampered = tamper_with_future(BASE, as_of, data)
    assert_frame_equal(
        build_training_set(tampered, as_of, cutoffs, churn_window_days=90, horizon_days=180),
        build_training_set(BASE, as_of, cutoffs, churn_window_days=90, horizon_days=180),
    )


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), definition=st.sampled_from(CHURN_DEFINITIONS))
def test_training_set_with_terms_never_reads_past_its_date(
    data: st.DataObject, definition: ChurnDefinition
) -> None:
    as_of = pd.Timestamp("2025-10-01")
    cutoffs = snapshot_cutoffs(as_of, label_days=97, n_snapshots=3, spacing_days=60)
    tampered = tamper_with_future(SUBSCRIBED, as_of, data)

    def stacked(tables: Tables) -> pd.DataFrame:
        return build_training_set(
            tables, as_of, cutoffs, churn_window_days=90, horizon_days=180, definition=definition
        )

    got = stacked(tampered)
    assert got["churned"].notna().any() and "days_to_renewal" in got.columns
    assert_frame_equal(got, stacked(SUBSCRIBED))


def test_a_row_just_before_as_of_does_count() -> None:
    """The guard above could pass by ignoring everything; this one shows the cutoff is exact."""
    as_of = pd.Timestamp("2025-06-01")
    row = BASE.transactions.iloc[[0]].assign(
        ts=as_of - pd.Timedelta(microseconds=1), amount=1e6, order_id="JUST-BEFORE"
    )
    plus = replace(BASE, transactions=pd.concat([BASE.transactions, row], ignore_index=True))
    before = build_features(BASE, as_of).set_index("customer_id")
    after = build_features(plus, as_of).set_index("customer_id")
    who = row["customer_id"].iloc[0]
    assert after.loc[who, "spend_total"] == before.loc[who, "spend_total"] + 1e6
    assert after.loc[who, "recency_days"] < 1e-6
