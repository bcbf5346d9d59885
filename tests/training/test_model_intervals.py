"""The bundle's ranges: spend bounds from its stored intervals, CLV bounds by the CLV formula."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from training.datasets import FeatureSpec
from training.intervals import SpendIntervals
from training.model import Calibrator, ModelBundle, SpendModel

COLUMNS = ["recency_days", "spend_90d"]


def rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "recency_days": rng.exponential(60, n),
            "spend_90d": rng.exponential(100, n),
        }
    )


def bundle(config: dict[str, object]) -> ModelBundle:
    x = rows(2000)
    params = {"verbosity": -1, "num_leaves": 7, "seed": 1, "deterministic": True}
    churn = lgb.train(
        params | {"objective": "binary"},
        lgb.Dataset(x[COLUMNS], (x["recency_days"] > 60).astype(float)),
        10,
    )
    spend = lgb.train(
        params | {"objective": "tweedie"}, lgb.Dataset(x[COLUMNS], x["spend_90d"]), 10
    )
    return ModelBundle(
        FeatureSpec(COLUMNS, {}, []),
        churn,
        Calibrator([0.0, 1.0], [0.0, 1.0]),
        SpendModel("tweedie", {"spend": spend}, Calibrator([0.0, 1e9], [0.0, 1e9])),
        {"churn_window_days": 90, "horizon_days": 365, "margin_rate": 0.3, **config},
    )


@pytest.fixture(scope="module")
def with_ranges() -> ModelBundle:
    plain = bundle({"discount_factor": 0.9})
    valid = rows(3000, seed=1)
    pred = plain.predict(valid)["predicted_spend"].to_numpy()
    actual = pred * np.random.default_rng(2).gamma(2.0, 0.5, len(pred))
    plain.config["spend_intervals"] = SpendIntervals.fit(pred, actual).to_dict()
    return plain


def test_spend_bounds_are_the_stored_intervals_and_clv_bounds_follow_the_clv_formula(
    with_ranges: ModelBundle,
) -> None:
    scored = rows(200, seed=3).assign(
        spend_total=np.linspace(10, 1000, 200), margin_total=np.linspace(-5, 400, 200)
    )
    scored["n_orders"] = 4.0
    predicted = with_ranges.predict(scored)
    intervals = SpendIntervals.from_dict(with_ranges.config["spend_intervals"])
    low, high = intervals.bounds(predicted["predicted_spend"])
    np.testing.assert_array_equal(predicted["spend_low"], low)
    np.testing.assert_array_equal(predicted["spend_high"], high)
    assert (predicted["spend_low"] < predicted["spend_high"]).all()
    rate = with_ranges.margin_rates(scored) * 0.9  # the customer's own margin, discounted
    np.testing.assert_allclose(predicted["clv_low"], np.maximum(low * rate, 0.0))
    np.testing.assert_allclose(predicted["clv_high"], np.maximum(high * rate, 0.0))
    np.testing.assert_allclose(predicted["clv"], np.maximum(predicted["predicted_spend"] * rate, 0))
    assert (predicted["clv_low"] >= 0).all()


def test_a_bundle_without_intervals_gives_empty_bounds_and_the_same_values(
    with_ranges: ModelBundle,
) -> None:
    scored = rows(50, seed=4)
    before = ModelBundle(
        with_ranges.spec,
        with_ranges.churn,
        with_ranges.churn_calibrator,
        with_ranges.spend,
        {k: v for k, v in with_ranges.config.items() if k != "spend_intervals"},
    )
    old, new = before.predict(scored), with_ranges.predict(scored)
    bounds = ["spend_low", "spend_high", "clv_low", "clv_high"]
    assert old[bounds].isna().all().all()
    assert new[bounds].notna().all().all()
    pd.testing.assert_frame_equal(old.drop(columns=bounds), new.drop(columns=bounds))


def test_the_intervals_are_saved_with_the_bundle(with_ranges: ModelBundle, tmp_path: Path) -> None:
    scored = rows(20, seed=5)
    loaded = ModelBundle.load(with_ranges.save(tmp_path / "bundle"))
    pd.testing.assert_frame_equal(loaded.predict(scored), with_ranges.predict(scored))
