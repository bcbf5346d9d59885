"""BG/NBD outputs (probability alive, expected purchases) as features of the LightGBM models."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from training.btyd.beta_geo import BetaGeo

BTYD_COLUMNS = ("btyd_p_alive", "btyd_purchases_window", "btyd_purchases_horizon")


def rfm_arrays(features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """frequency, recency and T (days) from a feature table, as the BTYD summary defines them."""
    frequency = (features["n_purchase_days"].fillna(1.0) - 1.0).clip(lower=0.0).to_numpy(float)
    age = features["tenure_days"].fillna(0.0).to_numpy(float)
    recency = np.clip(age - features["recency_days"].fillna(0.0).to_numpy(float), 0.0, age)
    # Same-day orders at different hours are one purchase day: no repeat, so no recency.
    return frequency, np.where(frequency > 0, recency, 0.0), age


def fit_btyd(features: pd.DataFrame) -> dict[str, float]:
    """BG/NBD parameters fitted on one snapshot (unsupervised: it reads no label)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BetaGeo().fit(*rfm_arrays(features))
    return model.params_


def add_btyd_features(
    features: pd.DataFrame, params: dict[str, float], window_days: float, horizon_days: float
) -> pd.DataFrame:
    """The feature table plus `BTYD_COLUMNS` under given BG/NBD parameters (a new frame)."""
    model = BetaGeo()
    model.r_, model.alpha_, model.a_, model.b_ = (params[k] for k in ("r", "alpha", "a", "b"))
    x, t_x, age = rfm_arrays(features)
    derived = pd.DataFrame(
        {
            "btyd_p_alive": model.conditional_probability_alive(x, t_x, age),
            "btyd_purchases_window": model.conditional_expected_purchases(window_days, x, t_x, age),
            "btyd_purchases_horizon": model.conditional_expected_purchases(
                horizon_days, x, t_x, age
            ),
        },
        index=features.index,
    )
    return pd.concat([features.drop(columns=list(BTYD_COLUMNS), errors="ignore"), derived], axis=1)


def with_btyd_by_snapshot(
    stacked: pd.DataFrame, window_days: float, horizon_days: float
) -> tuple[pd.DataFrame, dict[str, float]]:
    """BTYD features for stacked snapshots, each fitted on its own cutoff's customers only.

    Returns:
        The frame with `BTYD_COLUMNS`, and the parameters of the latest snapshot, which
        scoring uses.
    """
    parts, latest = [], {}
    for _, snapshot in stacked.groupby("as_of", sort=True):
        latest = fit_btyd(snapshot)
        parts.append(add_btyd_features(snapshot, latest, window_days, horizon_days))
    return pd.concat(parts).loc[stacked.index], latest
