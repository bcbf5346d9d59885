"""Subscribers' score columns: MRR and days to renewal from their features, null for retail."""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.scoring.columns import SCORE_COLUMNS, SUBSCRIPTION_COLUMNS
from serving.scoring.scorer import Scorer
from tests.serving.scoring.test_reasons import customers
from training.model import ModelBundle

AS_OF = pd.Timestamp("2026-01-01")


def subscribers() -> pd.DataFrame:
    """The three customers as subscribers: one gave notice, one holds no term any more."""
    return customers().assign(
        holds_term=[1.0, 0.0, 1.0],
        mrr=[120.0, np.nan, 45.5],
        days_to_renewal=[12.0, np.nan, 200.0],
        billing_period_months=[12.0, np.nan, 1.0],
        notice_given=[1.0, np.nan, 0.0],
        days_to_noticed_end=[12.0, np.nan, np.nan],
    )


def test_the_subscription_columns_are_score_columns_after_the_next_order() -> None:
    assert set(SUBSCRIPTION_COLUMNS) == {"mrr", "days_to_renewal"}
    after = SCORE_COLUMNS.index("days_overdue") + 1
    assert SCORE_COLUMNS[after : after + 2] == SUBSCRIPTION_COLUMNS


def test_a_subscriber_scores_with_their_mrr_and_days_to_renewal(bundle: ModelBundle) -> None:
    features = subscribers()
    before = features.copy()
    scores = Scorer(bundle, "7").score(features, AS_OF, reasons="none")
    np.testing.assert_array_equal(scores["mrr"].to_numpy(), [120.0, np.nan, 45.5])
    np.testing.assert_array_equal(scores["days_to_renewal"].to_numpy(), [12.0, np.nan, 200.0])
    scores.loc[0, "mrr"] = 0.0  # a score row is not a view of the features
    pd.testing.assert_frame_equal(features, before)


def test_retail_rows_score_as_before_with_null_subscription_columns(bundle: ModelBundle) -> None:
    scorer = Scorer(bundle, "7")
    retail = scorer.score(customers(), AS_OF, reasons="none")
    for name in SUBSCRIPTION_COLUMNS:
        assert retail[name].dtype == np.float64
        assert retail[name].isna().all()
    # The subscription columns change nothing else for the same customers' scores.
    with_subscriptions = scorer.score(subscribers().assign(notice_given=0.0), AS_OF, "none")
    pd.testing.assert_frame_equal(
        retail[["churn_probability", "clv", "value_at_risk"]],
        with_subscriptions[["churn_probability", "clv", "value_at_risk"]],
    )


def test_the_scorer_offers_the_downgrade_or_pause_to_a_customer_with_notice(
    bundle: ModelBundle,
) -> None:
    scores = Scorer(bundle, "7").score(subscribers(), AS_OF, reasons="none")
    noticed = scores.set_index("customer_id").loc["lapsed"]
    assert noticed["recommended_action"] == "downgrade_or_pause"
    assert noticed["action_reason"].startswith(
        "Gave notice: the subscription (120 a month) ends in 12 days."
    )
    assert "notice_before_end" not in "".join(scores["triggers"].iloc[1:])
