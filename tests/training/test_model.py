"""The bundle's parts: calibration and the optional BG/NBD features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.labels import build_training_set
from features.synthetic import generate_tables
from training.btyd.features import BTYD_COLUMNS, add_btyd_features, with_btyd_by_snapshot
from training.model import Calibrator, discount_factor


def test_centred_isotonic_keeps_ranking_and_calibration() -> None:
    rng = np.random.default_rng(0)
    raw = rng.random(5000)
    y = (rng.random(5000) < raw**2).astype(float)  # miscalibrated: truth is raw squared
    cal = Calibrator.fit(raw, y, bounds=(0.0, 1.0))
    p = cal(raw)
    assert len(np.unique(p)) > 1000  # a step function would give a few dozen values
    assert np.all(np.diff(p[np.argsort(raw)]) >= 0)  # monotone
    assert abs(p.mean() - y.mean()) < 0.01
    assert cal(np.array([0.5]))[0] == pytest.approx(0.25, abs=0.05)


def test_constant_target_calibrates_to_the_constant() -> None:
    cal = Calibrator.fit(np.array([0.1, 0.5, 0.9]), np.array([1.0, 1.0, 1.0]))
    assert cal(np.array([0.0, 0.7, 2.0])).tolist() == [1.0, 1.0, 1.0]


def test_discount_factor() -> None:
    assert discount_factor(0.0, 365) == 1.0
    # Spend spread evenly over one year at 10 %: (1 - 1/1.1) / ln(1.1).
    assert discount_factor(0.1, 365) == pytest.approx((1 - 1 / 1.1) / np.log(1.1), rel=1e-3)


def test_btyd_features_are_fitted_per_snapshot() -> None:
    tables = generate_tables(400, seed=2)
    cutoffs = [pd.Timestamp("2025-06-01"), pd.Timestamp("2025-09-01")]
    stacked = build_training_set(
        tables, "2026-11-01", cutoffs, churn_window_days=90, horizon_days=180
    )
    with_btyd, latest = with_btyd_by_snapshot(stacked, 90, 180)
    assert set(BTYD_COLUMNS) <= set(with_btyd.columns)
    assert with_btyd["btyd_p_alive"].between(0, 1).all()
    assert (with_btyd["btyd_purchases_horizon"] >= with_btyd["btyd_purchases_window"]).all()
    # The latest snapshot's columns come from parameters fitted on that snapshot alone.
    last = stacked[stacked["as_of"] == cutoffs[-1]]
    again = add_btyd_features(last, latest, 90, 180)
    pd.testing.assert_frame_equal(again, with_btyd.loc[last.index])
