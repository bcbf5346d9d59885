"""The scorer: the bundle's one churn/spend/CLV formula, and every score column in its order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.scoring.columns import OPTIONAL_COLUMNS, SCORE_COLUMNS
from serving.scoring.scorer import Scorer
from tests.serving.scoring.test_reasons import customers
from training.intervals import SpendIntervals
from training.model import ModelBundle

AS_OF = pd.Timestamp("2026-01-01")


def test_scorer_and_bundle_give_the_same_churn_spend_and_clv(bundle: ModelBundle) -> None:
    rows = customers().assign(spend_total=[100.0, 50.0, 900.0], margin_total=[10.0, 30.0, 90.0])
    bundle.config["discount_factor"] = 0.9
    try:
        scores = Scorer(bundle, "7").score(rows, AS_OF, reasons="none")
        predicted = bundle.predict(rows)
    finally:
        del bundle.config["discount_factor"]
    for column in ("churn_probability", "predicted_spend", "clv"):
        np.testing.assert_array_equal(scores[column].to_numpy(), predicted[column].to_numpy())
    np.testing.assert_array_equal(
        scores["value_at_risk"].to_numpy(),
        predicted["churn_probability"].to_numpy() * predicted["clv"].to_numpy(),
    )
    assert (predicted["clv"] < predicted["predicted_spend"]).all()  # margin and discount applied


def test_a_score_row_has_the_score_columns_in_order(bundle: ModelBundle) -> None:
    scores = Scorer(bundle, "7").score(customers(), AS_OF)
    expected = [c for c in SCORE_COLUMNS if c not in OPTIONAL_COLUMNS or c in scores.columns]
    assert list(scores.columns) == expected
    with_type = customers().assign(segment=["student", "parent", "student"])
    typed = Scorer(bundle, "7").score(with_type, AS_OF)
    assert list(typed.columns) == list(SCORE_COLUMNS)


def test_the_next_order_is_never_in_the_past(bundle: ModelBundle) -> None:
    """Due on a date from today on, or overdue by some days: never a forecast already missed."""
    rows = pd.concat([customers(), customers().iloc[[0]]], ignore_index=True).assign(
        customer_id=["late", "soon", "today", "once"],
        recency_days=[124.0, 5.0, 3.0, 40.0],
        gap_mean_days=[40.0, 25.0, 3.0, np.nan],
    )
    scores = Scorer(bundle, "7").score(rows, AS_OF, reasons="none")
    assert scores["next_order_status"].tolist() == ["overdue", "due", "due", "unknown"]
    assert scores["days_overdue"].tolist()[:3] == [84.0, 0.0, 0.0]  # 124 days ago + 40
    assert np.isnan(scores["days_overdue"].iloc[3])
    expected = [pd.NaT, pd.Timestamp("2026-01-21"), AS_OF, pd.NaT]
    assert scores["expected_next_order"].tolist() == expected
    assert not (scores["expected_next_order"] < scores["as_of"]).any()


def test_a_score_row_says_whether_the_customer_is_in_the_decision_population(
    bundle: ModelBundle,
) -> None:
    """Bought within the churn window (90 days here): `features.population`'s one rule."""
    rows = customers().assign(recency_days=[124.0, 90.0, 3.0])
    scores = Scorer(bundle, "7").score(rows, AS_OF, reasons="none")
    assert scores["active_customer"].tolist() == [False, True, True]


def test_scores_carry_the_bundles_ranges(bundle: ModelBundle) -> None:
    """The scorer's range columns are the bundle's; a bundle without ranges gives nulls."""
    rows = customers().assign(spend_total=[100.0, 50.0, 900.0], margin_total=[10.0, 30.0, 90.0])
    ranges = ["spend_low", "spend_high", "clv_low", "clv_high"]
    assert Scorer(bundle, "7").score(rows, AS_OF, reasons="none")[ranges].isna().all().all()
    spend = bundle.predict(rows)["predicted_spend"].to_numpy()
    bundle.config["spend_intervals"] = SpendIntervals.fit(spend, spend * [0.5, 1.0, 1.5]).to_dict()
    try:
        scores = Scorer(bundle, "7").score(rows, AS_OF, reasons="none")
        predicted = bundle.predict(rows)
    finally:
        del bundle.config["spend_intervals"]
    for column in ranges:
        np.testing.assert_array_equal(scores[column].to_numpy(), predicted[column].to_numpy())
    assert (scores["clv_low"] <= scores["clv_high"]).all() and scores["clv_high"].gt(0).all()
