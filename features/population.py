"""The decision population: the customers a business still acts on, one rule for every figure.

A customer is *active* as of T when they bought within the churn window before T
(`recency_days <= churn_window_days`). Customers who left long before T are certain churners:
counted in, they flatter every churn metric (any model ranks them at the top) and swamp every
headline rate. Headlines, training and backtest metrics and the promotion rule are computed
over the active customers, with the all-customer figures beside them, named as such.

Under contractual churn (`features.labels.CHURN_DEFINITIONS`) the active customers are the
subscribers: those holding a subscription term at T (`holds_term`, see `features.subscriptions`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.columns import ColumnData, numbers, row_count

RECENCY = "recency_days"
HOLDS_TERM = "holds_term"


def active_mask(features: ColumnData, churn_window_days: float, n: int | None = None) -> np.ndarray:
    """Whether each customer bought within the churn window before the date (unknown: no)."""
    recency = numbers(features, RECENCY, row_count(features, n))
    with np.errstate(invalid="ignore"):
        return np.asarray(recency <= churn_window_days)


def population_rule(churn_window_days: float, definition: str = "inactivity") -> str:
    """The decision population in words, for tables and logs."""
    if definition == "contractual":
        return "subscribers: holding a subscription term at the date"
    return f"bought within the {churn_window_days:g} days before the date"


def population_mask(
    features: ColumnData,
    churn_window_days: float,
    definition: str = "inactivity",
    n: int | None = None,
) -> np.ndarray:
    """Whether each customer is in the decision population of the churn `definition`."""
    if definition == "contractual":
        return subscriber_mask(features, n)
    return active_mask(features, churn_window_days, n)


def decision_population(
    frame: pd.DataFrame, churn_window_days: float, definition: str = "inactivity"
) -> pd.DataFrame:
    """The rows of active customers (see the module docstring)."""
    return frame[population_mask(frame, churn_window_days, definition, len(frame))]


def subscriber_mask(features: ColumnData, n: int | None = None) -> np.ndarray:
    """Whether each customer holds a subscription term at the date (no subscription data: no)."""
    return np.asarray(numbers(features, HOLDS_TERM, row_count(features, n)) == 1)
