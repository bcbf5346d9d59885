"""Backtest prediction frames with a known better and worse predictor, and a result around them."""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd

from training.backtest import CHURN_ROWS, SPEND_ROWS, BacktestResult
from training.metrics import churn_metrics, spend_metrics
from training.train import TrainResult


def churn_predictions(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """`truth` is each customer's true churn probability; `noise` knows nothing and is too high.

    Churn is drawn from `truth`, so `truth` is calibrated and ranks well; `noise` is uniform,
    unrelated to churn. Rounded to two decimals: many ties.
    """
    rng = np.random.default_rng(seed)
    truth = np.round(rng.beta(0.7, 1.3, n), 2)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in range(n)],
            "actual": (rng.random(n) < truth).astype(float),
            "active": rng.random(n) < 0.7,
            "truth": truth,
            "noise": np.round(rng.random(n), 2),
        }
    )


def spend_predictions(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """`truth` is each customer's expected spend; `noise` is it shuffled and 50% too high.

    Spend is a purchase (probability q) of an exponential amount: most customers spend 0.
    """
    rng = np.random.default_rng(seed)
    buys, mean = rng.beta(0.8, 1.2, n), rng.gamma(2.0, 40.0, n)
    truth = np.round(buys * mean, 1)
    actual = np.where(rng.random(n) < buys, np.round(rng.exponential(mean), 2), 0.0)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in range(n)],
            "actual": actual,
            "active": rng.random(n) < 0.7,
            "truth": truth,
            "noise": 1.5 * rng.permutation(truth),
        }
    )


def as_model(frame: pd.DataFrame, model: str, baselines: dict[str, str]) -> pd.DataFrame:
    """The frame with `model` renamed to "model" and the baselines renamed, as a backtest has."""
    kept = ["customer_id", "actual", "active", model, *baselines]
    return frame[kept].rename(columns={model: "model"} | baselines)


def backtest_result(n: int = 600, seed: int = 0) -> BacktestResult:
    """A backtest's result around generated predictions (no model is trained)."""
    churn = as_model(churn_predictions(n, seed), "truth", {"noise": "recency"})
    spend = as_model(spend_predictions(n, seed), "truth", {"noise": "last_period"})
    predictions = {"churn": churn, "spend": spend.assign(active=churn["active"])}

    def table(target: str, rows: np.ndarray) -> pd.DataFrame:
        frame = predictions[target]
        metrics_of, shown = (
            (churn_metrics, CHURN_ROWS) if target == "churn" else (spend_metrics, SPEND_ROWS)
        )
        return pd.DataFrame(
            {
                name: {
                    k: v
                    for k, v in metrics_of(frame["actual"][rows], frame[name][rows]).items()
                    if k in shown
                }
                for name in frame.columns[3:]
            }
        )

    active = predictions["churn"]["active"].to_numpy()
    everyone = np.ones(n, dtype=bool)
    return BacktestResult(
        churn=table("churn", active),
        spend=table("spend", active),
        trained=cast(TrainResult, None),
        n_customers=n,
        churn_all=table("churn", everyone),
        spend_all=table("spend", everyone),
        n_active=int(active.sum()),
        churn_window_days=90,
        predictions=predictions,
    )
