"""The decision population: customers who bought within the churn window before the date."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.population import active_mask, decision_population


def test_active_means_bought_within_the_churn_window() -> None:
    frame = pd.DataFrame(
        {"customer_id": ["a", "b", "c", "d"], "recency_days": [0.0, 90.0, 90.5, np.nan]}
    )
    assert active_mask(frame, 90).tolist() == [True, True, False, False]
    assert decision_population(frame, 90)["customer_id"].tolist() == ["a", "b"]
    assert decision_population(frame, 30)["customer_id"].tolist() == ["a"]


def test_dict_columns_give_the_same_answer() -> None:
    columns = {"recency_days": np.array([5.0, 400.0])}
    assert active_mask(columns, 90, 2).tolist() == [True, False]
