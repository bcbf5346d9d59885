"""Baselines every model is logged beside: recency, last-period spend, BG/NBD + Gamma-Gamma."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.build import build_rfm_summary
from features.schema import Tables
from training.btyd.base import pareto_quiet_if_alive
from training.btyd.beta_geo import BetaGeo
from training.btyd.pareto_nbd import ParetoNBD
from training.btyd.predict import btyd_predict
from training.model import Calibrator

# Calibrated probabilities stay off 0 and 1: a certain-but-wrong score costs an infinite log loss.
PROBABILITY_BOUNDS = (1e-3, 1 - 1e-3)
NEVER = 1e6  # recency of a customer without a purchase: longer than any real one


def churn_baselines(
    tables: Tables, train: pd.DataFrame, score: pd.DataFrame, cutoff: pd.Timestamp, window_days: int
) -> dict[str, np.ndarray]:
    """Churn probabilities of the baselines for the `score` rows (features as of `cutoff`).

    recency: days since the last purchase, mapped to a probability by an isotonic fit on the
    training snapshots (absent when there are none). bgnbd and pareto_nbd: P(no purchase in the
    window) under BG/NBD and Pareto/NBD fitted on the RFM summary as of `cutoff`
    (unsupervised: they read nothing after the cutoff).
    """
    summary = build_rfm_summary(tables, cutoff)
    aligned = score[["customer_id"]].merge(summary, on="customer_id", how="left").fillna(0.0)
    out = {}
    if len(train):
        recency = Calibrator.fit(
            train["recency_days"].fillna(NEVER), train["churned"], bounds=PROBABILITY_BOUNDS
        )
        out["recency"] = recency(score["recency_days"].fillna(NEVER))
    args = [summary[c] for c in ("frequency", "recency", "T")]
    out["bgnbd"] = bgnbd_no_purchase(BetaGeo().fit(*args), aligned, window_days)
    pareto = ParetoNBD().fit(*args)
    x, t_x, age = (aligned[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    alive = pareto.conditional_probability_alive(x, t_x, age)
    quiet = pareto_quiet_if_alive(pareto.params_, x, age, window_days)
    out["pareto_nbd"] = np.clip(1.0 - alive + alive * quiet, 0.0, 1.0)
    return out


def spend_baselines(
    tables: Tables, score: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int
) -> dict[str, np.ndarray]:
    """Spend predictions of the baselines over the horizon for the `score` rows.

    last_period: net spend in the `horizon_days` before the cutoff (floored at 0).
    bgnbd_gg, pareto_nbd_gg: BG/NBD or Pareto/NBD expected purchases x Gamma-Gamma expected
    value, fitted as of the cutoff.
    """
    tx = tables.transactions
    start = cutoff - pd.Timedelta(days=horizon_days)
    recent = tx[(tx["ts"] < cutoff) & (tx["ts"] >= start)]
    last = recent.groupby("customer_id")["amount"].sum().clip(lower=0.0)
    summary = build_rfm_summary(tables, cutoff)
    aligned = score[["customer_id"]].merge(summary, on="customer_id", how="left").fillna(0.0)
    return {
        "last_period": score["customer_id"].map(last).fillna(0.0).to_numpy(dtype=float),
        **{
            name: btyd_predict(summary, aligned, float(horizon_days), process)[
                "expected_spend"
            ].to_numpy(dtype=float)
            for name, process in (("bgnbd_gg", BetaGeo), ("pareto_nbd_gg", ParetoNBD))
        },
    }


def bgnbd_no_purchase(bg: BetaGeo, summary: pd.DataFrame, window: float) -> np.ndarray:
    """P(no purchase in the next `window` days) under BG/NBD: dead, or alive and not buying."""
    x, t_x, big_t = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    alive = bg.conditional_probability_alive(x, t_x, big_t)
    # The purchase rate's posterior is Gamma(r + x, alpha + T): its Laplace transform at window.
    quiet = ((bg.alpha_ + big_t) / (bg.alpha_ + big_t + window)) ** (bg.r_ + x)
    return np.clip(1.0 - alive + alive * quiet, 0.0, 1.0)
