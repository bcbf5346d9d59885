"""BTYD predictions over a horizon: BG/NBD purchases times Gamma-Gamma (or plain mean) value."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from training.btyd.beta_geo import BetaGeo
from training.btyd.fitting import FloatArray
from training.btyd.gamma_gamma import GammaGamma
from training.btyd.pareto_nbd import ParetoNBD

RFM_COLUMNS = ("frequency", "recency", "T", "monetary_value")
PREDICTION_COLUMNS = ("p_alive", "expected_purchases", "expected_spend")


def btyd_predict(
    train_summary: pd.DataFrame,
    score_summary: pd.DataFrame,
    horizon: float,
    process: type[BetaGeo] | type[ParetoNBD] = BetaGeo,
) -> pd.DataFrame:
    """Fit BG/NBD (or `process`) and Gamma-Gamma on one RFM summary; predict for another.

    The spend model falls back to each customer's own mean value (and the train mean for
    customers without repeats) when Gamma-Gamma cannot be fitted or has no finite mean (q <= 1);
    refunds can make a mean value non-positive, so only positive values train Gamma-Gamma.

    Args:
        train_summary: Columns frequency, recency, T, monetary_value, one row per customer, as of
            the training cutoff.
        score_summary: The same columns as of the scoring cutoff.
        horizon: Prediction horizon in the time unit of the summaries.
        process: the purchase-process model (BG/NBD by default, or Pareto/NBD).

    Returns:
        Frame on score_summary's index with columns p_alive, expected_purchases (over
        the horizon) and expected_spend (expected purchases x expected average value, >= 0).
    """
    for name, frame in (("train_summary", train_summary), ("score_summary", score_summary)):
        missing = [c for c in RFM_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks columns {missing}")
    bg = process().fit(train_summary["frequency"], train_summary["recency"], train_summary["T"])
    args = (score_summary["frequency"], score_summary["recency"], score_summary["T"])
    p_alive = bg.conditional_probability_alive(*args)
    purchases = bg.conditional_expected_purchases(horizon, *args)
    value = _expected_value(train_summary, score_summary)
    spend = purchases * np.clip(value, 0.0, None)
    columns = dict(zip(PREDICTION_COLUMNS, (p_alive, purchases, spend), strict=True))
    return pd.DataFrame(columns, index=score_summary.index)


def _expected_value(train: pd.DataFrame, score: pd.DataFrame) -> FloatArray:
    """Expected average purchase value per scored customer (Gamma-Gamma, else plain means)."""
    x_train = train["frequency"].to_numpy(dtype=np.float64)
    m_train = train["monetary_value"].to_numpy(dtype=np.float64)
    x = score["frequency"].to_numpy(dtype=np.float64)
    m = score["monetary_value"].to_numpy(dtype=np.float64)
    usable = (x_train > 0) & (m_train > 0)
    model: GammaGamma | None = None
    # Gamma-Gamma needs a few distinct repeat values to identify three parameters.
    if usable.sum() >= 3 and np.ptp(m_train[usable]) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = GammaGamma().fit(x_train[usable], m_train[usable])
    if model is not None and model.q_ > 1:
        return model.conditional_expected_average_profit(x, np.where(m > 0, m, 0.0))
    fallback = float(m_train[usable].mean()) if usable.any() else 0.0
    return np.where(x > 0, m, fallback)
