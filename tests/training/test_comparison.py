"""Paired bootstrap of a backtest: fast paths equal the metrics, directions, verdicts, files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.training.predictions import as_model, churn_predictions, spend_predictions
from training.backtest import CHURN_ROWS, SPEND_ROWS
from training.comparison import (
    INTERVAL_COLUMNS,
    higher_is_better,
    paired_bootstrap,
    read_comparison,
    render,
    verdicts,
    write_comparison,
)
from training.metrics import churn_metrics, spend_metrics
from training.resampled import (
    bootstrap_metrics,
    draw_counts,
    resampled_churn_metrics,
    resampled_spend_metrics,
)

ROWS = {"churn": CHURN_ROWS, "spend": SPEND_ROWS}
RESAMPLED = {"churn": resampled_churn_metrics, "spend": resampled_spend_metrics}
METRICS_OF = {"churn": churn_metrics, "spend": spend_metrics}
BUILD = {"churn": churn_predictions, "spend": spend_predictions}


def _same(fast: float, generic: float) -> bool:
    if math.isnan(generic):
        return math.isnan(fast)
    return fast == pytest.approx(generic, rel=1e-9, abs=1e-12)


def _counts(n: int, seed: int) -> np.ndarray:
    """Resamples x rows: bootstrap draws, every row once, and a draw of a few rows only."""
    rng = np.random.default_rng(seed)
    few = np.zeros(n)
    few[rng.choice(n, 7, replace=False)] = rng.integers(1, 4, 7)
    return np.vstack([draw_counts(rng, 6, n).T, np.ones(n), few])


@pytest.mark.parametrize("target", ["churn", "spend"])
@pytest.mark.parametrize("predictor", ["truth", "noise"])
def test_the_fast_paths_equal_the_metric_functions_on_the_same_resample(
    target: str, predictor: str
) -> None:
    frame = BUILD[target](n=900, seed=5)
    y, p = frame["actual"].to_numpy(), frame[predictor].to_numpy()
    if target == "spend":
        y = np.where(np.arange(y.size) % 50 == 0, -y, y)  # a few refunds
    counts = _counts(y.size, seed=1)
    fast = RESAMPLED[target](counts, y, p)
    assert set(ROWS[target]) <= set(fast)
    for b, draws in enumerate(counts):
        rows = np.repeat(np.arange(y.size), draws.astype(int))
        generic = METRICS_OF[target](y[rows], p[rows])
        for metric, values in fast.items():
            assert _same(values[b], generic[metric]), (metric, b, values[b], generic[metric])


@pytest.mark.parametrize("target", ["churn", "spend"])
def test_fast_paths_agree_where_a_metric_is_undefined(target: str) -> None:
    # One class only (churn) or nothing spent (spend): NaN on both sides, not a number.
    y = np.zeros(40)
    p = np.round(np.linspace(0, 1, 40), 1)
    fast = RESAMPLED[target](np.ones((1, 40)), y, p)
    generic = METRICS_OF[target](y, p)
    for metric, values in fast.items():
        assert _same(values[0], generic[metric]), metric
    assert math.isnan(fast["roc_auc" if target == "churn" else "normalized_gini"][0])


def test_a_metric_without_a_fast_path_is_computed_by_the_metric_function() -> None:
    frame = churn_predictions(n=300, seed=2)
    y, p = frame["actual"].to_numpy(), frame["truth"].to_numpy()
    drawn = bootstrap_metrics("churn", y, {"m": p}, ["base_rate"], 5, np.random.default_rng(9))
    counts = draw_counts(np.random.default_rng(9), 5, y.size)
    expected = [y[np.repeat(np.arange(y.size), c.astype(int))].mean() for c in counts.T]
    np.testing.assert_allclose(drawn["m"]["base_rate"], expected)


def test_the_shown_metrics_never_fall_back_to_one_call_per_resample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def slow(*args: object) -> None:
        raise AssertionError("the generic metric function ran per resample")

    monkeypatch.setattr("training.resampled._generic", slow)
    predictions = {
        "churn": as_model(churn_predictions(500), "truth", {"noise": "recency"}),
        "spend": as_model(spend_predictions(500), "truth", {"noise": "last_period"}),
    }
    intervals = paired_bootstrap(predictions, ROWS, resamples=50)
    assert len(intervals) == len(CHURN_ROWS) + len(SPEND_ROWS)


def _frames(model: str) -> dict[str, pd.DataFrame]:
    other = "noise" if model == "truth" else "truth"
    return {
        "churn": as_model(churn_predictions(3000, seed=3), model, {other: "baseline"}),
        "spend": as_model(spend_predictions(3000, seed=3), model, {other: "baseline"}),
    }


def test_a_clearly_better_model_gets_intervals_on_the_better_side_of_zero() -> None:
    intervals = paired_bootstrap(_frames("truth"), ROWS, resamples=300, seed=1)
    assert list(intervals.columns) == list(INTERVAL_COLUMNS)
    assert set(intervals["metric"]) == set(CHURN_ROWS) | set(SPEND_ROWS)
    for row in intervals.itertuples():
        if higher_is_better(row.metric):
            assert 0 < row.low <= row.difference <= row.high, row
        else:
            assert row.low <= row.difference <= row.high < 0, row
    assert intervals["better"].all() and (intervals["outcome"] == "better").all()
    judged = verdicts(intervals)
    assert (judged["verdict"] == "beats every baseline").all()
    assert judged["detail"].str.startswith("narrowest over baseline: ").all()


def test_lower_is_better_metrics_count_a_larger_value_as_worse() -> None:
    intervals = paired_bootstrap(_frames("noise"), ROWS, resamples=300, seed=1)
    by_metric = intervals.set_index(["target", "metric"])
    brier = by_metric.loc[("churn", "brier")]
    assert brier["model_value"] > brier["baseline_value"] and brier["low"] > 0
    assert by_metric.loc[("spend", "decile_mape"), "low"] > 0
    assert by_metric.loc[("churn", "roc_auc"), "high"] < 0
    assert (intervals["outcome"] == "worse").all() and not intervals["better"].any()
    judged = verdicts(intervals).set_index(["target", "metric"])
    assert (judged["verdict"] == "loses").all()
    assert judged.loc[("churn", "brier"), "detail"].startswith("to baseline: ")


def test_identical_predictors_differ_by_exactly_zero_and_tie() -> None:
    frames = {
        target: frame.assign(copy=frame["model"]) for target, frame in _frames("truth").items()
    }
    intervals = paired_bootstrap(frames, ROWS, resamples=100)
    same = intervals[intervals["baseline"] == "copy"]
    assert (same[["difference", "low", "high"]] == 0).all().all()
    assert (same["outcome"] == "tie").all()
    judged = verdicts(same)
    assert (judged["verdict"] == "ties").all()
    assert judged["detail"].str.startswith("with copy: ").all()
    # Beating one baseline and tying with another is a tie, not a win over every baseline.
    assert (verdicts(intervals)["verdict"] == "ties").all()


def test_total_error_compares_absolute_errors_not_signed_ones() -> None:
    rng = np.random.default_rng(4)
    actual = rng.gamma(5.0, 20.0, 3000)
    expected = actual.mean() * rng.lognormal(0.0, 0.3, actual.size)
    expected *= actual.sum() / expected.sum()
    frame = pd.DataFrame({"actual": actual, "active": True, "model": 0.8 * expected})
    frames = {"spend": frame.assign(over=1.05 * expected)}
    intervals = paired_bootstrap(frames, {"spend": ["total_error"]}, resamples=300)
    (row,) = intervals.itertuples()
    assert row.model_value == pytest.approx(-0.2) and row.baseline_value == pytest.approx(0.05)
    # Signed, -0.20 is below +0.05; in absolute terms the model misses by 0.15 more.
    assert row.difference == pytest.approx(0.15) and row.low > 0 and row.outcome == "worse"


def test_the_draws_are_seeded_and_the_populations_separate() -> None:
    frames = _frames("truth")
    one = paired_bootstrap(frames, ROWS, resamples=80, seed=7, populations=("active", "all"))
    again = paired_bootstrap(frames, ROWS, resamples=80, seed=7, populations=("all",))
    pd.testing.assert_frame_equal(
        one[one["population"] == "all"].reset_index(drop=True), again.reset_index(drop=True)
    )
    active = one[one["population"] == "active"]
    for target, frame in frames.items():
        assert (active[active["target"] == target]["customers"] == frame["active"].sum()).all()
    assert (one[one["population"] == "all"]["customers"] == len(frames["churn"])).all()
    other = paired_bootstrap(frames, ROWS, resamples=80, seed=8)
    assert not np.allclose(other["low"], active["low"])


def test_an_empty_population_is_undefined_not_an_error() -> None:
    frames = {t: f.assign(active=False) for t, f in _frames("truth").items()}
    intervals = paired_bootstrap(frames, ROWS, resamples=20)
    assert (intervals["outcome"] == "undefined").all() and (intervals["customers"] == 0).all()
    assert (verdicts(intervals)["verdict"] == "undefined").all()


def test_a_metric_undefined_for_a_baseline_is_undefined_against_it_only() -> None:
    # A constant prediction has no Spearman correlation: nothing to compare with.
    frame = _frames("truth")["spend"].assign(flat=1.0)
    intervals = paired_bootstrap({"spend": frame}, {"spend": ["spearman"]}, resamples=50)
    outcome = intervals.set_index("baseline")["outcome"]
    assert outcome.to_dict() == {"baseline": "better", "flat": "undefined"}
    (judged,) = verdicts(intervals).itertuples()
    assert judged.verdict == "beats every baseline"
    assert judged.detail.endswith("; undefined against flat")


def test_bad_input_is_refused_naming_what() -> None:
    frames = _frames("truth")
    with pytest.raises(ValueError, match="no 'model' column"):
        paired_bootstrap({"churn": frames["churn"].drop(columns="model")}, ROWS)
    with pytest.raises(ValueError, match="no direction is known for the metric 'base_rate'"):
        paired_bootstrap(frames, {"churn": ["base_rate"], "spend": []})
    with pytest.raises(ValueError, match="population must be one of"):
        paired_bootstrap(frames, ROWS, populations=("everyone",))
    broken = frames["churn"].copy()
    broken.loc[[3, 8], "baseline"] = [np.nan, np.inf]
    with pytest.raises(
        ValueError,
        match=r"churn predictions, column 'baseline': 2 rows are not finite numbers "
        r"\(customers c00003, c00008\)",
    ):
        paired_bootstrap({"churn": broken}, ROWS, resamples=5)


def test_render_shows_every_baseline_and_a_verdict_per_metric() -> None:
    frames = {t: f.assign(second=f["baseline"]) for t, f in _frames("truth").items()}
    intervals = paired_bootstrap(frames, ROWS, resamples=50)
    text = render(intervals, 50)
    active = frames["churn"]["active"].sum()
    assert f"churn: model - baseline on {active:,} active customers, 50 paired bootstrap" in text
    assert f"  beats every baseline on: {', '.join(CHURN_ROWS)}\n" in text
    assert text.endswith(f"  beats every baseline on: {', '.join(SPEND_ROWS)}")
    assert text.count(" second ") == len(CHURN_ROWS) + len(SPEND_ROWS)


def test_render_names_what_the_model_loses_to_and_ties_with() -> None:
    frames = {t: f.assign(copy=f["model"]) for t, f in _frames("noise").items()}
    text = render(paired_bootstrap(frames, {"churn": ["brier"], "spend": []}, resamples=50), 50)
    assert "  beats every baseline" not in text
    assert "  brier loses to baseline: 0." in text and "; ties with copy: 0." in text


@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet"])
def test_written_intervals_read_back_with_their_verdicts(tmp_path: Path, suffix: str) -> None:
    frames = {t: f.assign(active=f.index < 5) for t, f in _frames("noise").items()}
    frames["churn"].loc[:4, "actual"] = 0.0  # no churner among the active: ROC-AUC undefined
    intervals = paired_bootstrap(frames, ROWS, resamples=30, populations=("active", "all"))
    path = write_comparison(intervals, tmp_path / f"iv{suffix}", {"as_of": "1998-01-01"})
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # nothing left aside
    if suffix == ".json":
        document = json.loads(path.read_text())
        assert document["as_of"] == "1998-01-01" and document["confidence"] == 0.95
        assert document["verdicts"] == verdicts(intervals).to_dict(orient="records")
        back, context = read_comparison(path.read_text())
        assert context == {"as_of": "1998-01-01", "confidence": 0.95}
    else:
        back = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        judged = verdicts(intervals).rename(columns={"verdict": "expected"})
        joined = back.merge(judged, on=["target", "population", "metric"])
        assert len(joined) == len(intervals) and (joined["verdict"] == joined["expected"]).all()
        assert "undefined" in set(back["outcome"])  # five active customers: some are undefined
        back = back[list(INTERVAL_COLUMNS)]
    pd.testing.assert_frame_equal(back, intervals, check_dtype=False)


def test_a_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    intervals = paired_bootstrap(_frames("truth"), ROWS, resamples=5)
    with pytest.raises(ValueError, match=r"iv\.txt: the file name must end in \.json, \.csv"):
        write_comparison(intervals, tmp_path / "iv.txt", {})
    assert not any(tmp_path.iterdir())
