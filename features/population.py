"""The decision population: the customers a business still acts on, one rule for every figure.

A customer is *active* as of T when they bought within the churn window before T
(`recency_days <= churn_window_days`). Customers who left long before T are certain churners:
counted in, they flatter every churn metric (any model ranks them at the top) and swamp every
headline rate. Headlines, training and backtest metrics and the promotion rule are computed
over the active customers, with the all-customer figures beside them, named as such.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.columns import ColumnData, numbers, row_count

RECENCY = "recency_days"


def active_mask(features: ColumnData, churn_window_days: float, n: int | None = None) -> np.ndarray:
    """Whether each customer bought within the churn window before the date (unknown: no)."""
    recency = numbers(features, RECENCY, row_count(features, n))
    with np.errstate(invalid="ignore"):
        return np.asarray(recency <= churn_window_days)


def decision_population(frame: pd.DataFrame, churn_window_days: float) -> pd.DataFrame:
    """The rows of active customers (see the module docstring)."""
    return frame[active_mask(frame, churn_window_days, len(frame))]
