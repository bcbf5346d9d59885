"""Monitoring: histograms and PSI by hand, drift on shifted generated data, stale data."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.schema import Tables
from features.synthetic import generate_tables
from serving.batch.monitoring import DriftMonitor, FreshnessRules, check_freshness
from training.reference import Histogram, fit_reference, psi

AS_OF = pd.Timestamp("2026-11-01")


def test_numeric_bins_are_reference_quantiles_with_missing_last() -> None:
    values = pd.Series([1.0, 2.0, 3.0, 4.0, np.nan])
    hist = Histogram.fit(values, bins=2)
    assert hist.edges == [2.0] and hist.levels is None
    assert hist.shares == [0.2, 0.6, 0.2]  # below 2, from 2 on, missing
    counts = hist.counts(pd.Series([0.0, 2.5, 9.0, np.nan, np.nan]))
    assert counts.tolist() == [1, 2, 2]


def test_count_like_features_keep_their_few_values() -> None:
    hist = Histogram.fit(pd.Series([0.0] * 80 + [1.0] * 15 + [2.0] * 5))
    assert hist.edges == [0.0, 1.0]  # ties merged: below 0, 0, 1 and more, missing
    assert hist.shares == [0.0, 0.8, 0.2, 0.0]


def test_categorical_bins_have_other_and_missing() -> None:
    values = pd.Series(["app", "web", "app", None], dtype="category")
    hist = Histogram.fit(values)
    assert hist.levels == ["app", "web"] and hist.edges is None
    assert hist.shares == [0.5, 0.25, 0.0, 0.25]
    counts = hist.counts(pd.Series(["store", "app", None, None]))
    assert counts.tolist() == [1, 0, 1, 2]  # app, web, other, missing


def test_psi_by_hand() -> None:
    assert psi([0.5, 0.5], np.array([50, 50])) == 0.0
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert psi([0.5, 0.5], np.array([80, 20])) == pytest.approx(expected)
    assert psi([1.0, 0.0], np.array([0, 10])) < 20  # an empty bin is floored, not infinite
    assert math.isnan(psi([0.5, 0.5], np.array([0, 0])))


@pytest.fixture(scope="module")
def reference() -> dict[str, object]:
    tables = generate_tables(500, seed=1)
    features = build_features(tables, AS_OF)
    return fit_reference(features, features[["customer_id"]], AS_OF)


def drift(reference: dict[str, object], tables: Tables) -> dict[str, object]:
    monitor = DriftMonitor(reference)
    monitor.add_features(build_features(tables, AS_OF))
    return monitor.report()


@pytest.fixture(scope="module")
def fresh() -> Tables:
    return generate_tables(500, seed=2)


def test_no_drift_on_other_customers_of_the_same_generator(
    reference: dict[str, object], fresh: Tables
) -> None:
    report = drift(reference, fresh)
    assert report["measured"] and report["flagged"] == []
    assert 0 < report["max_psi"] < 0.25


def test_tripled_amounts_are_flagged(reference: dict[str, object], fresh: Tables) -> None:
    tripled = fresh.transactions.assign(
        amount=fresh.transactions["amount"] * 3, margin=fresh.transactions["margin"] * 3
    )
    report = drift(reference, replace(fresh, transactions=tripled))
    assert {"spend_total", "spend_mean", "net_spend"} <= set(report["flagged"])
    assert "n_orders" not in report["flagged"]  # behaviour did not change, only amounts
    assert report["features_psi"]["spend_total"] > 0.25


def test_missing_events_are_flagged(reference: dict[str, object], fresh: Tables) -> None:
    events = fresh.events
    thinned = events[events["event"] != "session"]  # the session feed stopped
    report = drift(reference, replace(fresh, events=thinned))
    assert any("session" in column for column in report["flagged"])
    assert not any(column.startswith("spend") for column in report["flagged"])


def test_counts_add_up_across_chunks(reference: dict[str, object], fresh: Tables) -> None:
    features = build_features(fresh, AS_OF)
    whole, chunked = DriftMonitor(reference), DriftMonitor(reference)
    whole.add_features(features)
    for part in np.array_split(np.arange(len(features)), 3):
        chunked.add_features(features.iloc[part])
    assert chunked.report() == whole.report()


def test_no_reference_is_reported_not_failed() -> None:
    monitor = DriftMonitor(None)
    monitor.add_features(pd.DataFrame({"customer_id": ["a"], "x": [1.0]}))
    report = monitor.report()
    assert report["measured"] is False and report["flagged"] == []


def test_fresh_data_raises_no_flag(fresh: Tables) -> None:
    found = check_freshness(fresh, AS_OF, expect_events=True)
    assert found["flags"] == []
    assert found["tables"]["transactions"]["lag_days"] <= 1


def test_stale_and_thin_data_are_flagged(fresh: Tables) -> None:
    tx = fresh.transactions
    stopped = replace(fresh, transactions=tx[tx["ts"] < AS_OF - pd.Timedelta(days=5)])
    flags = check_freshness(stopped, AS_OF)["flags"]
    assert any(f.startswith("transactions: latest row") for f in flags)

    recent = tx["ts"] >= AS_OF - pd.Timedelta(days=7)
    keep = ~recent | (np.arange(len(tx)) % 5 == 0)  # a fifth of the last week arrived
    thin = replace(fresh, transactions=tx[keep])
    flags = check_freshness(thin, AS_OF)["flags"]
    assert any("of the usual daily volume" in f for f in flags), flags
    assert not any("latest row" in f for f in flags)

    no_events = replace(fresh, events=None)
    assert check_freshness(no_events, AS_OF, expect_events=True)["flags"] == [
        "events: table missing, but the model uses event features"
    ]
    assert check_freshness(no_events, AS_OF, expect_events=False)["flags"] == []


def test_freshness_reads_only_rows_before_the_date(fresh: Tables) -> None:
    rules = FreshnessRules(max_lag_days=2)
    early = AS_OF - pd.Timedelta(days=60)
    found = check_freshness(fresh, early, rules)
    assert found["flags"] == []
    assert pd.Timestamp(found["tables"]["transactions"]["last_ts"]) < early


def test_the_ranges_are_not_watched_apart_from_the_values_they_bound() -> None:
    """A model's reference may hold the range columns; their drift is the values' drift."""
    rng = np.random.default_rng(0)
    clv = rng.gamma(1.0, 100.0, 1000)
    scores = pd.DataFrame({"customer_id": range(1000), "clv": clv, "clv_high": 2 * clv})
    reference = fit_reference(scores[["customer_id"]], scores, AS_OF)
    assert "clv_high" in reference["scores"]
    monitor = DriftMonitor(reference)
    monitor.add_scores(scores.assign(clv=3 * clv, clv_high=6 * clv))
    drift = monitor.report()
    assert drift["flagged"] == ["clv"]
    assert "clv_high" not in drift["scores_psi"]
