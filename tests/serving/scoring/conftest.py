"""A small churn and spend bundle trained on synthetic features, shared by the scoring tests."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

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
