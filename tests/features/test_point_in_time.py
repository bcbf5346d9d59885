"""Point-in-time correctness: rows at or after as_of never change a feature or a snapshot."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from features.build import build_features, build_rfm_summary
from features.labels import build_training_set, snapshot_cutoffs
from features.schema import KNOWN_EVENTS, Tables
from features.synthetic import generate_tables

BASE = generate_tables(60, seed=7, end="2026-01-01", years=1.5)
AS_OFS = list(pd.date_range("2025-03-01", "2025-12-01", freq="17D"))


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
    return replace(
        tables,
        transactions=tamper(tables.transactions, new_tx),
        events=tamper(tables.events, new_ev),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), as_of=st.sampled_from(AS_OFS))
def test_features_ignore_rows_at_or_after_as_of(data: st.DataObject, as_of: pd.Timestamp) -> None:
    tampered = tamper_with_future(BASE, as_of, data)
    assert_frame_equal(build_features(tampered, as_of), build_features(BASE, as_of))
    assert_frame_equal(build_rfm_summary(tampered, as_of), build_rfm_summary(BASE, as_of))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_training_set_never_reads_past_its_date(data: st.DataObject) -> None:
    as_of = pd.Timestamp("2025-10-01")
    cutoffs = snapshot_cutoffs(as_of, label_days=90, n_snapshots=3, spacing_days=60)
    tampered = tamper_with_future(BASE, as_of, data)
    kwargs = {"churn_window_days": 90, "horizon_days": 180}
    assert_frame_equal(
        build_training_set(tampered, as_of, cutoffs, **kwargs),
        build_training_set(BASE, as_of, cutoffs, **kwargs),
    )


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
