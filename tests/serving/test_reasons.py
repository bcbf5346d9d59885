"""Reasons: they are the model's own largest contributions, told in the customer's numbers."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from serving.reasons import ReasonModel
from serving.scorer import Scorer
from training.datasets import FeatureSpec
from training.model import Calibrator, ModelBundle, SpendModel

COLUMNS = [
    "recency_days",
    "overdue_ratio",
    "unresolved_tickets",
    "nps_last",
    "content_view_total",
    "spend_90d",
    "wishlist_add_total",
    "days_since_wishlist_add",
    "tenure_days",
    "n_orders",
    "gap_mean_days",
]


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    rng = np.random.default_rng(0)
    n = 3000
    x = pd.DataFrame(
        {
            "recency_days": rng.exponential(60, n),
            "overdue_ratio": rng.exponential(1.5, n),
            "unresolved_tickets": rng.poisson(0.3, n).astype(float),
            "nps_last": rng.integers(0, 11, n).astype(float),
            "content_view_total": rng.poisson(1, n).astype(float),
            "spend_90d": rng.exponential(100, n),
            "wishlist_add_total": rng.poisson(1, n).astype(float),
            "days_since_wishlist_add": rng.exponential(30, n),
            "tenure_days": rng.uniform(100, 900, n),
            "n_orders": rng.poisson(5, n).astype(float) + 1,
            "gap_mean_days": rng.uniform(10, 60, n),
        }
    )
    logit = 0.02 * x["recency_days"] + 1.2 * x["unresolved_tickets"] - 0.2 * x["nps_last"] - 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    params = {"objective": "binary", "verbosity": -1, "num_leaves": 15, "seed": 1}
    churn = lgb.train(params, lgb.Dataset(x, y), 60)
    spend = lgb.train({**params, "objective": "tweedie"}, lgb.Dataset(x, x["spend_90d"]), 20)
    identity = Calibrator([0.0, 1.0], [0.0, 1.0])
    return ModelBundle(
        FeatureSpec(COLUMNS, {}, ["wishlist_add"]),
        churn,
        identity,
        SpendModel("tweedie", {"spend": spend}, Calibrator([0.0, 1e9], [0.0, 1e9])),
        {"churn_window_days": 90, "horizon_days": 365, "margin_rate": 0.3},
    )


def customers() -> pd.DataFrame:
    rows = pd.DataFrame(
        {
            "customer_id": ["lapsed", "ticket", "happy"],
            "recency_days": [124.0, 5.0, 3.0],
            "overdue_ratio": [3.1, 0.2, 0.1],
            "unresolved_tickets": [0.0, 2.0, 0.0],
            "nps_last": [8.0, 3.0, 10.0],
            "content_view_total": [0.0, 1.0, 4.0],
            "spend_90d": [0.0, 80.0, 300.0],
            "wishlist_add_total": [0.0, 1.0, 2.0],
            "days_since_wishlist_add": [np.nan, 12.0, 3.0],
            "tenure_days": [400.0, 300.0, 800.0],
            "n_orders": [4.0, 6.0, 20.0],
            "gap_mean_days": [40.0, 25.0, 30.0],
        }
    )
    return rows


def test_reasons_follow_the_largest_contributions(bundle: ModelBundle) -> None:
    rows = customers()
    scorer = Scorer(bundle, "7")
    contributions, families = scorer.explain(rows)
    expected = ReasonModel.for_columns(COLUMNS)
    # Independently: sum each row's TreeSHAP values by family and rank them.
    raw = bundle.churn.predict(rows[COLUMNS], pred_contrib=True)
    np.testing.assert_allclose(contributions, raw)
    by_family = {
        f: raw[
            :,
            [
                i
                for i, c in enumerate(COLUMNS)
                if expected.families[int(np.argmax(expected.indicator[i]))] == f
            ],
        ].sum(axis=1)
        for f in expected.families
    }
    for i in range(len(rows)):
        positive = sorted(((v[i], f) for f, v in by_family.items() if v[i] > 0), reverse=True)
        assert families[i] == [f for _, f in positive[:3]]
    assert families[0][0] == "recency" and families[1][0] == "tickets"


def test_reason_sentences_use_the_customers_numbers(bundle: ModelBundle) -> None:
    scores = Scorer(bundle, "7").score(customers(), pd.Timestamp("2026-01-01"), reasons="all")
    lapsed, ticket = scores["reasons"].iloc[0], scores["reasons"].iloc[1]
    assert lapsed.startswith("no purchase for 124 days, about 3x their usual gap")
    assert "2 unresolved support tickets" in ticket
    assert "last NPS 3 (detractor)" in ticket
    assert scores["model_version"].eq("7").all()


def test_reasons_only_where_someone_reads_them(bundle: ModelBundle) -> None:
    scores = Scorer(bundle, "7").score(customers(), pd.Timestamp("2026-01-01"), reasons="none")
    assert scores["reasons"].eq("").all()
    assert scores["expected_next_order"].iloc[0] == pd.Timestamp("2025-10-09")  # 124 days ago + 40
