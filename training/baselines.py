"""Baselines logged beside every model: recency, last-period spend, BTYD; usage models."""

from __future__ import annotations

from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

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
    tables: Tables,
    train: pd.DataFrame,
    score: pd.DataFrame,
    cutoff: pd.Timestamp,
    window_days: int,
    definition: str = "inactivity",
    event_types: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Churn probabilities of the baselines for the `score` rows (features as of `cutoff`).

    recency: days since the last purchase, mapped to a probability by an isotonic fit on the
    training snapshots (absent when there are none). bgnbd and pareto_nbd: P(no purchase in the
    window) under BG/NBD and Pareto/NBD fitted on the RFM summary as of `cutoff`
    (unsupervised: they read nothing after the cutoff). Contractual churn: the usage models
    (`usage_baselines`) instead of Pareto/NBD, whose purchase process does not describe
    renewals (its fit on regular payments also runs for minutes).
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
    if definition == "contractual":
        return out | usage_baselines(train, score, list(event_types))
    pareto = ParetoNBD().fit(*args)
    x, t_x, age = (aligned[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    alive = pareto.conditional_probability_alive(x, t_x, age)
    quiet = pareto_quiet_if_alive(pareto.params_, x, age, window_days)
    out["pareto_nbd"] = np.clip(1.0 - alive + alive * quiet, 0.0, 1.0)
    return out


def spend_baselines(
    tables: Tables,
    score: pd.DataFrame,
    cutoff: pd.Timestamp,
    horizon_days: int,
    definition: str = "inactivity",
) -> dict[str, np.ndarray]:
    """Spend predictions of the baselines over the horizon for the `score` rows.

    last_period: net spend in the `horizon_days` before the cutoff (floored at 0).
    bgnbd_gg, pareto_nbd_gg: BG/NBD or Pareto/NBD expected purchases x Gamma-Gamma expected
    value, fitted as of the cutoff (no Pareto/NBD for contractual churn, as for churn).
    """
    processes = {"bgnbd_gg": BetaGeo, "pareto_nbd_gg": ParetoNBD}
    if definition == "contractual":
        del processes["pareto_nbd_gg"]
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
            for name, process in processes.items()
        },
    }


def bgnbd_no_purchase(bg: BetaGeo, summary: pd.DataFrame, window: float) -> np.ndarray:
    """P(no purchase in the next `window` days) under BG/NBD: dead, or alive and not buying."""
    x, t_x, big_t = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    alive = bg.conditional_probability_alive(x, t_x, big_t)
    # The purchase rate's posterior is Gamma(r + x, alpha + T): its Laplace transform at window.
    quiet = ((bg.alpha_ + big_t) / (bg.alpha_ + big_t + window)) ** (bg.r_ + x)
    return np.clip(1.0 - alive + alive * quiet, 0.0, 1.0)


# Payment features of the plain LightGBM baseline, besides every event type's counts.
PAYMENT_FEATURES = (
    "recency_days",
    "n_orders",
    "orders_90d",
    "spend_90d",
    "spend_365d",
    "last_order_amount",
)
USAGE_BASELINE_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 20,
    "verbosity": -1,
    "num_threads": 1,
    "seed": 0,
    "deterministic": True,
}


def usage_baselines(
    train: pd.DataFrame, score: pd.DataFrame, event_types: list[str]
) -> dict[str, np.ndarray]:
    """The churn models a subscription business builds first, fitted on the training snapshots.

    event_counts_logit: logistic regression on each event type's 30- and 90-day counts
    (log1p, standardised). counts_payments_lgbm: plain LightGBM (fixed parameters, 200
    rounds) on those counts plus the payment history (`PAYMENT_FEATURES`). None without
    training rows of both classes.
    """
    counts = [
        column
        for event in event_types
        for column in (f"{event}_30d", f"{event}_90d")
        if column in train.columns and column in score.columns
    ]
    labels = train["churned"].to_numpy(dtype=float)
    if not counts or len(np.unique(labels)) < 2:
        return {}
    logit = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    logit.fit(np.log1p(train[counts].fillna(0.0).clip(lower=0.0)), labels)
    out = {
        "event_counts_logit": logit.predict_proba(
            np.log1p(score[counts].fillna(0.0).clip(lower=0.0))
        )[:, 1]
    }
    inputs = counts + [c for c in PAYMENT_FEATURES if c in train.columns and c in score.columns]
    booster = lgb.train(
        USAGE_BASELINE_PARAMS,
        lgb.Dataset(train[inputs].to_numpy(dtype=float), labels),
        num_boost_round=200,
    )
    out["counts_payments_lgbm"] = booster.predict(score[inputs].to_numpy(dtype=float))
    return out
