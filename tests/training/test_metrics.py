"""Tests of the evaluation metrics: hand-computed values, ties, degenerate inputs."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from scipy import stats
from sklearn.metrics import brier_score_loss, log_loss

from training.metrics import calibration_table, churn_metrics, decile_table, spend_metrics

CHURN_KEYS = {
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "top_decile_lift",
    "top_decile_capture",
    "ece",
    "base_rate",
}
SPEND_KEYS = {
    "spearman",
    "normalized_gini",
    "mae",
    "rmse",
    "top_decile_capture",
    "decile_mape",
    "total_error",
    "total_abs_error",
}


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    # Degenerate inputs must give NaN quietly, not through numpy or sklearn warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _same(left: dict[str, float], right: dict[str, float]) -> None:
    assert left.keys() == right.keys()
    for key in left:
        assert left[key] == pytest.approx(right[key], nan_ok=True, abs=1e-12), key


def test_churn_metrics_hand_computed():
    y = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    p = [0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2]
    got = churn_metrics(y, p)
    assert set(got) == CHURN_KEYS
    assert got["roc_auc"] == 1.0
    assert got["pr_auc"] == 1.0
    assert got["base_rate"] == 0.1
    # Top decile = the single highest p, a churner: rate 1 against a base rate of 0.1.
    assert got["top_decile_lift"] == pytest.approx(10.0)
    assert got["top_decile_capture"] == 1.0
    assert got["brier"] == pytest.approx((0.01 + 8 * 0.01 + 0.04) / 10)
    assert got["brier"] == pytest.approx(brier_score_loss(y, p))
    assert got["log_loss"] == pytest.approx(log_loss(y, p))


def test_churn_top_decile_shares_ties_at_the_cut():
    # n = 20, so the top decile holds 2 customers; three tie at the top with 2 churners among
    # them, so the top decile holds 2 * 2/3 churners on average over tie breaks.
    y = np.array([1, 1, 0] + [0] * 17)
    p = np.array([0.9, 0.9, 0.9] + [0.1] * 17)
    got = churn_metrics(y, p)
    assert got["top_decile_capture"] == pytest.approx(2 / 3)
    assert got["top_decile_lift"] == pytest.approx((4 / 3) / 2 / 0.1)


def test_churn_metrics_do_not_depend_on_row_order():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 101)
    # Few distinct values: many ties at every cut.
    p = rng.integers(0, 4, 101) / 4
    order = rng.permutation(101)
    _same(churn_metrics(y, p), churn_metrics(y[order], p[order]))


def test_churn_constant_prediction_is_a_random_model():
    y = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0] * 3)
    got = churn_metrics(y, np.full(30, 0.25))
    assert got["roc_auc"] == 0.5
    assert got["top_decile_lift"] == pytest.approx(1.0)
    assert got["top_decile_capture"] == pytest.approx(0.1)
    assert got["ece"] == pytest.approx(abs(0.3 - 0.25))


def test_churn_single_class_gives_nan_without_crashing():
    got = churn_metrics(np.zeros(10), np.linspace(0, 0.5, 10))
    for key in ("roc_auc", "pr_auc", "top_decile_lift", "top_decile_capture"):
        assert math.isnan(got[key]), key
    assert got["base_rate"] == 0.0
    assert math.isfinite(got["brier"]) and math.isfinite(got["ece"])


def test_log_loss_clips_certain_misses():
    got = churn_metrics([1, 0], [0.0, 1.0])
    assert got["log_loss"] == pytest.approx(-math.log(1e-15), rel=1e-4)


def test_ece_hand_computed():
    # Ties share a bin: two bins of 5, the first perfectly calibrated, the second off by 0.2.
    p = [0.2] * 5 + [0.8] * 5
    y = [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]
    assert churn_metrics(y, p)["ece"] == pytest.approx(0.5 * 0.0 + 0.5 * abs(0.6 - 0.8))


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1], [0.5], "values"),
        ([], [], "zero rows"),
        ([0, 2], [0.5, 0.5], "0 and 1"),
        ([0, 1], [0.5, 1.5], r"\[0, 1\]"),
        ([0, 1], [0.5, np.nan], "finite"),
    ],
)
def test_churn_metrics_reject_bad_input(y, p, message):
    with pytest.raises(ValueError, match=message):
        churn_metrics(y, p)


def test_calibration_table_hand_computed():
    p = [0.2] * 5 + [0.8] * 5
    y = [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]
    expected = pd.DataFrame(
        {
            "bin": np.array([1, 6], dtype=np.intp),
            "n": [5, 5],
            "p_mean": [0.2, 0.8],
            "y_rate": [0.2, 0.6],
            "p_min": [0.2, 0.8],
            "p_max": [0.2, 0.8],
        }
    )
    assert_frame_equal(calibration_table(y, p), expected, check_dtype=False)


def test_calibration_table_equal_frequency_bins():
    p = np.linspace(0.01, 0.99, 40)
    table = calibration_table(np.zeros(40), p, bins=4)
    assert table["bin"].tolist() == [1, 2, 3, 4]
    assert table["n"].tolist() == [10, 10, 10, 10]
    assert (table["p_max"].to_numpy()[:-1] < table["p_min"].to_numpy()[1:]).all()


def test_decile_table_hand_computed():
    y = np.arange(1.0, 11.0)
    pred = y / 2
    expected = pd.DataFrame(
        {
            "decile": np.arange(1, 11),
            "n": 1,
            "pred_sum": y[::-1] / 2,
            "actual_sum": y[::-1],
            "pred_mean": y[::-1] / 2,
            "actual_mean": y[::-1],
            "actual_share": y[::-1] / 55,
            "cum_actual_share": np.cumsum(y[::-1]) / 55,
        }
    )
    assert_frame_equal(decile_table(y, pred), expected, check_dtype=False)


def test_decile_table_zero_actuals_gives_nan_shares():
    table = decile_table(np.zeros(20), np.arange(20.0))
    assert table["actual_share"].isna().all()
    assert table["cum_actual_share"].isna().all()
    assert table["n"].sum() == 20


def test_spend_metrics_perfect_and_doubled():
    rng = np.random.default_rng(0)
    y = rng.gamma(0.7, 100.0, 200)
    perfect = spend_metrics(y, y)
    assert set(perfect) == SPEND_KEYS
    assert perfect["spearman"] == pytest.approx(1.0)
    assert perfect["normalized_gini"] == pytest.approx(1.0)
    assert perfect["mae"] == 0.0 and perfect["rmse"] == 0.0
    assert perfect["decile_mape"] == 0.0 and perfect["total_error"] == 0.0
    top = np.sort(y)[::-1][:20].sum() / y.sum()
    assert perfect["top_decile_capture"] == pytest.approx(top)
    doubled = spend_metrics(y, 2 * y)
    assert doubled["normalized_gini"] == pytest.approx(1.0)
    assert doubled["total_error"] == pytest.approx(1.0)
    assert doubled["total_abs_error"] == pytest.approx(1.0)
    assert doubled["decile_mape"] == pytest.approx(1.0)
    halved = spend_metrics(y, y / 2)
    assert halved["total_error"] == pytest.approx(-0.5)
    assert halved["total_abs_error"] == pytest.approx(0.5)


def test_normalized_gini_hand_computed():
    # Gain curve by prediction: 1/4, 1/4, 1/4, 1 against 1/4, 2/4, 3/4, 1 -> mean gap -0.1875;
    # by the actuals themselves: 3/4, 1, 1, 1 -> 0.3125.
    got = spend_metrics([3.0, 1.0, 0.0, 0.0], [0.1, 0.4, 0.3, 0.2])
    assert got["normalized_gini"] == pytest.approx(-0.1875 / 0.3125)


def test_normalized_gini_reverse_order_is_minus_one():
    y = np.array([5.0, 3.0, 2.0, 0.0, 0.0, 1.0])
    assert spend_metrics(y, -y)["normalized_gini"] == pytest.approx(-1.0)


def test_decile_mape_hand_computed():
    # Ten customers, distinct predictions: one per decile; the zero-actual one is skipped.
    y = [10.0, 20.0, 0.0, 5, 5, 5, 5, 5, 5, 5]
    pred = [12.0, 15.0, 1.0, 5.1, 5.2, 5.3, 5.4, 5.5, 5.6, 5.7]
    errors = [0.2, 0.25] + [0.02 * k for k in range(1, 8)]
    got = spend_metrics(y, pred)
    assert got["decile_mape"] == pytest.approx(sum(errors) / 9)
    assert got["total_error"] == pytest.approx(sum(pred) / sum(y) - 1)
    assert got["mae"] == pytest.approx(np.mean(np.abs(np.subtract(pred, y))))
    assert got["spearman"] == pytest.approx(stats.spearmanr(y, pred).statistic)


def test_spend_constant_prediction():
    y = np.arange(30.0)
    got = spend_metrics(y, np.full(30, 7.0))
    assert math.isnan(got["spearman"])
    assert got["normalized_gini"] == pytest.approx(0.0, abs=1e-12)
    assert got["top_decile_capture"] == pytest.approx(0.1)
    # One bin holds everyone: its error is the total error.
    assert got["decile_mape"] == pytest.approx(abs(7 * 30 / y.sum() - 1))


def test_spend_all_zero_actuals_gives_nan_without_crashing():
    got = spend_metrics(np.zeros(20), np.arange(20.0))
    for key in ("normalized_gini", "top_decile_capture", "decile_mape", "total_error"):
        assert math.isnan(got[key]), key
    assert got["mae"] == pytest.approx(9.5)


def test_spend_metrics_do_not_depend_on_row_order():
    rng = np.random.default_rng(5)
    y = rng.gamma(0.5, 50.0, 73) * (rng.random(73) < 0.6)
    pred = np.round(rng.gamma(1.0, 20.0, 73), -1)
    order = rng.permutation(73)
    _same(spend_metrics(y, pred), spend_metrics(y[order], pred[order]))


def test_inputs_are_not_mutated():
    y = pd.Series([1.0, 0.0, 3.0, 0.0])
    pred = pd.Series([0.5, 0.1, 2.0, 0.2])
    before = (y.copy(), pred.copy())
    spend_metrics(y, pred)
    decile_table(y, pred)
    pd.testing.assert_series_equal(y, before[0])
    pd.testing.assert_series_equal(pred, before[1])


def test_population_metrics_name_the_decision_population_and_everyone() -> None:
    from training.metrics import population_metrics

    y = np.array([1, 1, 1, 1, 0, 1, 0, 0])
    p = np.array([0.9, 0.9, 0.9, 0.9, 0.2, 0.6, 0.4, 0.7])
    active = np.array([False] * 4 + [True] * 4)
    out = population_metrics(churn_metrics, y, p, active, "churn_model")
    assert out["churn_model_base_rate"] == 0.25 and out["churn_model_base_rate_all"] == 0.625
    assert out["churn_model_roc_auc"] == churn_metrics(y[active], p[active])["roc_auc"]
    assert out["churn_model_roc_auc_all"] == churn_metrics(y, p)["roc_auc"]
    nobody = population_metrics(spend_metrics, y, p, np.zeros(8, bool), "spend_model")
    assert math.isnan(nobody["spend_model_mae"]) and nobody["spend_model_mae_all"] > 0
    with pytest.raises(ValueError, match="mask"):
        population_metrics(churn_metrics, y, p, active[:3], "x")
