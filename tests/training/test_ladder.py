"""The ladder: which rung a history gets, that each is point-in-time, and honest levels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from features.build import build_features
from features.labels import build_labels
from features.schema import Tables
from tests.training.btyd_world import START, cohort_tables
from training.backtest import backtest
from training.correction import snapshot_margins
from training.datasets import (
    BTYD_ONLY,
    OUT_OF_TIME,
    SHORT_WINDOWS,
    HistoryTooShortError,
    build_training_data,
    check_history,
    plan_cutoffs,
)
from training.train import TrainOptions, TrainResult, train_models

FIRST = pd.Timestamp("2025-01-01")
OPTIONS = TrainOptions(trials=2, seed=3, n_snapshots=3, spacing_days=30, num_threads=1)


@pytest.mark.parametrize(
    ("days_of_history", "window", "rung", "label_days"),
    [
        (420, 180, OUT_OF_TIME, 180),  # 60 + 2 x 180 days fit
        (365, 180, SHORT_WINDOWS, 152),  # the longest window that fits: (365 - 60) // 2
        (120, 180, SHORT_WINDOWS, 30),
        (80, 180, BTYD_ONLY, 40),  # no 14-day training window fits; half the history validates
    ],
)
def test_each_history_gets_the_best_rung_it_holds(
    days_of_history: int, window: int, rung: str, label_days: int
) -> None:
    as_of = FIRST + pd.Timedelta(days=days_of_history)
    plan = plan_cutoffs(FIRST, as_of, window, 6, 30, "horizon")
    assert (plan.rung, plan.label_days) == (rung, label_days)
    if plan.train:
        assert max(plan.train) + pd.Timedelta(days=label_days) <= plan.valid
    assert plan.valid is not None and plan.valid + pd.Timedelta(days=label_days) <= as_of


def test_a_history_under_two_purchase_cycles_is_refused_with_what_would_work() -> None:
    days = pd.to_datetime(["2025-01-01", "2025-02-10", "2025-01-05", "2025-02-14"])
    tx = pd.DataFrame({"customer_id": ["a", "a", "b", "b"], "ts": days, "amount": 10.0})
    with pytest.raises(HistoryTooShortError, match=r"under 2 purchase cycles.*At least 80 days"):
        check_history(tx, pd.Timestamp("2025-02-20"))
    check_history(tx, pd.Timestamp("2025-03-25"))  # 83 days: two cycles of 40 fit
    with pytest.raises(HistoryTooShortError, match="no repeat purchase"):
        check_history(tx[tx["ts"] < "2025-01-10"], pd.Timestamp("2025-06-01"))


@pytest.fixture(scope="module")
def cohort() -> Tables:
    return cohort_tables(2500, days=545, seed=5)


@pytest.mark.parametrize(
    ("history_days", "churn_rung", "spend_rung"),
    [(545, OUT_OF_TIME, OUT_OF_TIME), (365, OUT_OF_TIME, SHORT_WINDOWS)],
)
def test_each_rung_is_point_in_time(
    cohort: Tables, history_days: int, churn_rung: str, spend_rung: str
) -> None:
    as_of = START + pd.Timedelta(days=history_days)
    kwargs = {"churn_window_days": 90, "horizon_days": 180, "margin_rate": 0.3, "n_snapshots": 2}
    clean = build_training_data(cohort, as_of, **kwargs)
    assert (clean.churn_plan.rung, clean.spend_plan.rung) == (churn_rung, spend_rung)
    # Rows on or after the training date change nothing a snapshot holds.
    late = cohort.transactions.assign(ts=as_of + pd.Timedelta(days=1), amount=1e6)
    tampered = replace(cohort, transactions=pd.concat([cohort.transactions, late.head(300)]))
    dirty = build_training_data(tampered, as_of, **kwargs)
    for split in ("churn_train", "churn_valid", "spend_train", "spend_valid"):
        assert_frame_equal(getattr(clean, split), getattr(dirty, split))
    # A snapshot's base reads that snapshot alone: changing a later one leaves it as it was.
    frame = clean.spend_train
    first = frame["as_of"] == frame["as_of"].min()
    margins = snapshot_margins(frame, "bgnbd", "spend", 90)
    shifted = frame.copy()
    shifted.loc[~first, "recency_days"] = 0.0
    assert np.array_equal(snapshot_margins(shifted, "bgnbd", "spend", 90)[first], margins[first])


@pytest.fixture(scope="module")
def year_of_history(cohort: Tables) -> tuple[TrainResult, pd.Timestamp]:
    """CDNOW's case: a year of one cohort, a 180-day forecast asked for."""
    as_of = START + pd.Timedelta(days=365)
    options = replace(OPTIONS, churn_window_days=180, horizon_days=180)
    return train_models(cohort.before(as_of), as_of, options), as_of


def test_a_year_of_history_forecasts_180_days_on_short_windows(
    year_of_history: tuple[TrainResult, pd.Timestamp],
) -> None:
    trained, _ = year_of_history
    ladder = trained.bundle.config["ladder"]
    assert ladder["churn"]["rung"] == ladder["spend"]["rung"] == SHORT_WINDOWS
    assert ladder["spend"]["label_days"] == 152 and "out of time" in ladder["spend"]["validation"]
    assert trained.metrics["spend_label_days"] == 152


def test_the_forecast_total_stays_within_15_percent_of_what_happened(
    cohort: Tables, year_of_history: tuple[TrainResult, pd.Timestamp]
) -> None:
    trained, as_of = year_of_history
    features = build_features(cohort, as_of)
    predicted = trained.bundle.predict(features)["predicted_spend"].sum()
    actual = build_labels(cohort, as_of, None, 180)["future_spend"].sum()
    assert abs(predicted / actual - 1) < 0.15


def test_a_history_too_short_for_trees_gets_the_btyd_base_alone(cohort: Tables) -> None:
    as_of = START + pd.Timedelta(days=80)  # (80 - 60) // 2 = 10: no 14-day training window
    options = replace(OPTIONS, churn_window_days=60, horizon_days=90)
    trained = train_models(cohort.before(as_of), as_of, options)
    ladder = trained.bundle.config["ladder"]
    assert ladder["churn"]["rung"] == ladder["spend"]["rung"] == BTYD_ONLY
    assert ladder["spend"]["correction_weight"] == 0.0 and ladder["spend"]["label_days"] == 40
    scores = trained.bundle.predict(build_features(cohort, as_of))
    assert scores["predicted_spend"].gt(0).all() and scores["churn_probability"].between(0, 1).all()


def test_a_backtest_grades_every_rung_and_the_ranges_side_by_side(cohort: Tables) -> None:
    as_of = START + pd.Timedelta(days=365)
    options = replace(OPTIONS, churn_window_days=90, horizon_days=90)
    graded = backtest(cohort, as_of, options, every_rung=True)
    for table in (graded.churn, graded.spend):
        assert {"model", f"rung_{SHORT_WINDOWS}", f"rung_{BTYD_ONLY}"} <= set(table.columns)
        assert np.isfinite(table[[f"rung_{SHORT_WINDOWS}", f"rung_{BTYD_ONLY}"]].to_numpy()).all()
    assert set(graded.predictions["spend"].columns) >= {"model", f"rung_{BTYD_ONLY}"}
    checks = graded.intervals
    assert 0.5 < checks["spend_coverage"] <= 1.0 and 0.5 < checks["clv_coverage"] <= 1.0
    assert checks["equity_low"] <= checks["equity_predicted"] <= checks["equity_high"]
    text = graded.render()
    assert "spend: rung out_of_time, 90-day labels" in text and "80% ranges after T" in text
