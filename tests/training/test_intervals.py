"""Spend ranges: conformal coverage on held-out customers, zeros, tiny samples, equity, storage."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from training.intervals import (
    SpendIntervals,
    coverage,
    crossfit_bounds,
    interval_metrics,
)


def shop(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and actual spend like a retailer's: heavy tail, many buy nothing, some zeros.

    A customer expected to spend `mu` buys with probability 1 - exp(-mu / 30) (big spenders
    come back more often) and then spends a gamma amount with that mean; 15% of customers are
    expected to spend nothing (and 5% of them buy anyway). The model is right up to noise.
    """
    mu = rng.lognormal(3.0, 1.2, n)
    mu[rng.random(n) < 0.15] = 0.0
    buy = np.where(mu > 0, 1.0 - np.exp(-mu / 30.0), 0.05)
    amount = rng.gamma(2.0, np.where(mu > 0, mu / np.maximum(buy, 1e-9), 20.0) / 2.0)
    actual = np.where(rng.random(n) < buy, amount, 0.0)
    return mu * np.exp(rng.normal(0.0, 0.3, n)), actual


@pytest.fixture(scope="module")
def fitted() -> tuple[SpendIntervals, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    intervals = SpendIntervals.fit(*shop(rng, 5000))
    held_out_pred, held_out_actual = shop(rng, 50_000)
    return intervals, held_out_pred, held_out_actual


def test_each_bin_covers_eighty_percent_of_held_out_customers(
    fitted: tuple[SpendIntervals, np.ndarray, np.ndarray],
) -> None:
    """Bins whose range can miss at both ends hold 80% (+-6 points: 400 rows fit each bin).

    Pooled quantiles (one bin) miss this: small spenders buy less often than big ones.
    """
    intervals, pred, actual = fitted
    low, high = intervals.bounds(pred)
    bins = intervals.bins(pred)
    assert len(intervals.rows) >= 8
    ratio_bins = [b for b in range(len(intervals.rows)) if intervals.high[b] > 0]
    assert len(ratio_bins) >= 6
    for b in ratio_bins:
        rows = bins == b
        assert 0.74 <= coverage(actual[rows], low[rows], high[rows]) <= 0.86, b
    # Over every customer: at least the level, above it only where most buy nothing.
    assert 0.78 <= coverage(actual, low, high) <= 0.87


def test_pooled_quantiles_would_miss_per_bin() -> None:
    """The same data with one bin: some prediction range is covered far from 80%."""
    rng = np.random.default_rng(1)
    pooled = SpendIntervals.fit(*shop(rng, 5000), max_bins=1)
    binned = SpendIntervals.fit(*shop(np.random.default_rng(1), 5000))
    pred, actual = shop(rng, 50_000)
    low, high = pooled.bounds(pred)
    by_decile = pd.qcut(pred, 10, labels=False, duplicates="drop")
    per_decile = [
        coverage(actual[by_decile == d], low[by_decile == d], high[by_decile == d])
        for d in np.unique(by_decile)
    ]
    assert len(pooled.rows) == 2  # the floor's bin and one pooled bin
    assert max(abs(c - 0.8) for c in per_decile) > 0.1
    low, high = binned.bounds(pred)
    binned_decile = [
        coverage(actual[by_decile == d], low[by_decile == d], high[by_decile == d])
        for d in np.unique(by_decile)
    ]
    assert max(abs(c - 0.8) for c in binned_decile) < max(abs(c - 0.8) for c in per_decile)


def test_zero_predictions_get_the_spend_of_such_customers() -> None:
    """Nothing expected: an additive range from those customers' actual spend, not 0 x ratio."""
    rng = np.random.default_rng(4)
    pred = np.r_[np.zeros(100), rng.uniform(10, 100, 5000)]
    actual = np.r_[rng.exponential(10.0, 100), pred[100:] * rng.uniform(0.5, 1.5, 5000)]
    intervals = SpendIntervals.fit(pred, actual)
    low, high = intervals.bounds(np.zeros(3))
    assert np.all(high == high[0]) and high[0] > 5.0  # exponential(10): the 90% point is 23
    fresh = rng.exponential(10.0, 20_000)
    assert 0.74 <= coverage(fresh, np.full(20_000, low[0]), np.full(20_000, high[0])) <= 0.86


def test_a_bin_of_many_zeros_starts_at_zero_and_still_holds_eighty_percent() -> None:
    """Half buy nothing: the range is [0, 80% point], not [0, 90% point] (90% coverage)."""
    rng = np.random.default_rng(5)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        pred = rng.uniform(20, 40, n)
        return pred, np.where(rng.random(n) < 0.5, 0.0, pred * rng.gamma(2.0, 1.0, n))

    intervals = SpendIntervals.fit(*draw(3000))
    assert set(intervals.low) == {0.0}
    pred, actual = draw(40_000)
    assert 0.77 <= coverage(actual, *intervals.bounds(pred)) <= 0.83


def test_mostly_nobody_buys_gives_zero_to_zero() -> None:
    rng = np.random.default_rng(6)
    pred = rng.uniform(1, 5, 2000)
    actual = np.where(rng.random(2000) < 0.9, 0.0, 50.0)
    low, high = SpendIntervals.fit(pred, actual).bounds(pred)
    assert np.all(low == 0.0) and np.all(high == 0.0)


@pytest.mark.parametrize("n", [1, 5, 30, 120])
def test_tiny_samples_fall_back_to_pooled(n: int) -> None:
    rng = np.random.default_rng(n)
    pred = rng.uniform(1, 100, n)
    actual = pred * rng.uniform(0.0, 2.0, n)
    intervals = SpendIntervals.fit(pred, actual)
    assert sum(intervals.rows) == n
    assert all(rows >= min(n, 50) for rows in intervals.rows)
    low, high = intervals.bounds(pred)
    assert np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low <= high)
    if n < 100:
        assert intervals.edges == ()


def test_all_zero_predictions_and_all_zero_actuals() -> None:
    low, high = SpendIntervals.fit(np.zeros(200), np.zeros(200)).bounds(np.array([0.0, 3.0]))
    assert low.tolist() == [0.0, 0.0] and high.tolist() == [0.0, 0.0]
    intervals = SpendIntervals.fit(np.zeros(200), np.r_[np.zeros(100), np.full(100, 8.0)])
    assert intervals.bounds(np.array([0.0]))[1].tolist() == [8.0]


def test_bad_input_is_refused_with_the_rows() -> None:
    with pytest.raises(ValueError, match=r"actual holds 1 missing or negative values \(rows 2\)"):
        SpendIntervals.fit([1.0, 2.0, 3.0], [1.0, 0.0, -4.0])
    with pytest.raises(ValueError, match=r"pred holds 1 missing values \(rows 0\)"):
        SpendIntervals.fit([np.nan, 2.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="no validation rows"):
        SpendIntervals.fit([], [])
    with pytest.raises(ValueError, match="2 predictions for 1"):
        SpendIntervals.fit([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="between 0 and 1"):
        SpendIntervals.fit([1.0], [1.0], level=80)


def test_a_negative_prediction_counts_as_zero() -> None:
    a = SpendIntervals.fit([-1.0, 0.0, 2.0, 4.0], [0.0, 1.0, 2.0, 3.0])
    b = SpendIntervals.fit([0.0, 0.0, 2.0, 4.0], [0.0, 1.0, 2.0, 3.0])
    assert a == b


def test_round_trip_through_json(fitted: tuple[SpendIntervals, np.ndarray, np.ndarray]) -> None:
    intervals, pred, _ = fitted
    again = SpendIntervals.from_dict(json.loads(json.dumps(intervals.to_dict())))
    assert again == intervals
    for got, expected in zip(again.bounds(pred), intervals.bounds(pred), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_a_stored_dict_that_does_not_fit_is_refused(
    fitted: tuple[SpendIntervals, np.ndarray, np.ndarray],
) -> None:
    stored = fitted[0].to_dict()
    with pytest.raises(ValueError, match="expected 'mondrian-conformal-ratio'"):
        SpendIntervals.from_dict({**stored, "method": "quantile-boosting"})
    with pytest.raises(ValueError, match="bins from"):
        SpendIntervals.from_dict({**stored, "low": stored["low"][:-1]})


def test_missing_predictions_get_missing_bounds(
    fitted: tuple[SpendIntervals, np.ndarray, np.ndarray],
) -> None:
    low, high = fitted[0].bounds(np.array([np.nan, 10.0]))
    assert np.isnan(low[0]) and np.isnan(high[0]) and np.isfinite(high[1])


def test_coverage_counts_the_ends_and_needs_every_range() -> None:
    assert coverage([1.0, 2.0, 5.0, 0.0], [1.0, 0.0, 0.0, 0.5], [2.0, 2.0, 4.0, 1.0]) == 0.5
    assert math.isnan(coverage([1.0, 2.0], [np.nan, 0.0], [np.nan, 3.0]))
    assert math.isnan(coverage([], [], []))


def test_the_equity_range_covers_the_total_of_new_customers() -> None:
    """Level learned from 3,000 customers, applied to 3,000 others: 80% +-8 points over 200.

    Without the level's own error the range is too narrow (about 65%).
    """
    rng = np.random.default_rng(8)
    covered, narrow = [], []
    for _ in range(200):
        pred, actual = shop(rng, 3000)
        level = actual.sum() / pred.sum()  # the calibration's level, learned from these rows
        intervals = SpendIntervals.fit(pred * level, actual)
        new_pred, new_actual = shop(rng, 3000)
        low, high = intervals.equity_interval(new_pred * level, new_pred * level)
        covered.append(low <= new_actual.sum() <= high)
        low, high = dataclasses.replace(intervals, level_sd=0.0).equity_interval(
            new_pred * level, new_pred * level
        )
        narrow.append(low <= new_actual.sum() <= high)
    assert 0.72 <= np.mean(covered) <= 0.88
    assert np.mean(narrow) < 0.72


def test_a_level_that_moves_between_windows_is_covered_with_its_past_moves() -> None:
    """Each window's level moves by a log-normal shift (sd 0.08) no validation window shows.

    Measured from 4 past windows (`level_move_sd`'s root mean square of their log moves), the
    range covers about 80%; without it, far less.
    """
    rng = np.random.default_rng(9)
    covered, narrow = [], []
    for _ in range(200):
        pred, actual = shop(rng, 3000)
        intervals = SpendIntervals.fit(pred, actual)
        past_moves = rng.normal(0.0, 0.08, 4)
        moved = dataclasses.replace(
            intervals, level_shift_sd=float(np.sqrt(np.mean(past_moves**2)))
        )
        new_pred, new_actual = shop(rng, 3000)
        new_actual = new_actual * np.exp(rng.normal(0.0, 0.08))
        low, high = moved.equity_interval(new_pred, new_pred)
        covered.append(low <= new_actual.sum() <= high)
        low, high = intervals.equity_interval(new_pred, new_pred)
        narrow.append(low <= new_actual.sum() <= high)
    assert 0.7 <= np.mean(covered) <= 0.9
    assert np.mean(narrow) < 0.6


def test_a_stored_range_from_before_level_moves_loads_without_them(
    fitted: tuple[SpendIntervals, np.ndarray, np.ndarray],
) -> None:
    stored = fitted[0].to_dict()
    del stored["level_shift_sd"]
    assert SpendIntervals.from_dict(stored).level_shift_sd == 0.0


def test_the_equity_range_scales_with_value_per_spend(
    fitted: tuple[SpendIntervals, np.ndarray, np.ndarray],
) -> None:
    """CLV = spend x 0.3: the CLV total's range is the spend total's x 0.3."""
    intervals, pred, _ = fitted
    spend = intervals.equity_interval(pred, pred)
    clv = intervals.equity_interval(pred, pred * 0.3, value_per_spend=0.3)
    np.testing.assert_allclose(clv, np.array(spend) * 0.3)
    assert spend[0] < pred.sum() < spend[1]
    assert all(math.isnan(x) for x in intervals.equity_interval([], []))


def test_crossfitted_coverage_on_the_validation_rows() -> None:
    rng = np.random.default_rng(9)
    pred, actual = shop(rng, 6000)
    keys = pd.Series([f"c{i}" for i in range(6000)])
    low, high = crossfit_bounds(pred, actual, keys)
    in_sample = SpendIntervals.fit(pred, actual).bounds(pred)
    assert not np.array_equal(low + high, in_sample[0] + in_sample[1])  # other half's fit
    active = pred > np.median(pred)
    metrics = interval_metrics(pred, actual, keys, active)
    assert metrics["spend_interval_level"] == 0.8
    assert 0.75 <= metrics["spend_interval_coverage"] <= 0.85
    assert 0.77 <= metrics["spend_interval_coverage_all"] <= 0.88
    assert metrics["spend_interval_width"] > 0
    nobody = interval_metrics(pred, actual, keys, np.zeros(6000, dtype=bool))
    assert math.isnan(nobody["spend_interval_coverage"])
