"""Backtest: train as of T as `vafa train` does, then grade against what happened after T."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.build import build_features
from features.labels import build_labels
from features.schema import Tables, default_as_of
from training.baselines import churn_baselines, spend_baselines
from training.metrics import churn_metrics, spend_metrics
from training.train import TrainOptions, TrainResult, train_models

CHURN_ROWS = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "ece",
    "top_decile_lift",
    "top_decile_capture",
)
SPEND_ROWS = (
    "spearman",
    "normalized_gini",
    "mae",
    "rmse",
    "top_decile_capture",
    "decile_mape",
    "total_error",
)


@dataclass
class BacktestResult:
    """Side-by-side metrics of the model and every baseline, on the customers scored at T."""

    churn: pd.DataFrame  # rows: metrics; columns: model, recency, bgnbd
    spend: pd.DataFrame  # rows: metrics; columns: model, last_period, bgnbd_gg
    trained: TrainResult
    n_customers: int

    def render(self) -> str:
        """The two tables as text."""
        return (
            f"churn ({self.n_customers:,} customers; churn = no purchase in the window after T)\n"
            f"{self.churn.round(4).to_string()}\n\n"
            f"spend over the horizon\n{self.spend.round(4).to_string()}"
        )

    def flat_metrics(self) -> dict[str, float]:
        """`backtest_<target>_<model>_<metric>` for MLflow."""
        out: dict[str, float] = {}
        for target, table in (("churn", self.churn), ("spend", self.spend)):
            for model in table.columns:
                for metric, value in table[model].items():
                    out[f"backtest_{target}_{model}_{metric}"] = float(value)
        return out


def backtest(
    tables: Tables, as_of: pd.Timestamp, options: TrainOptions, storage: str | None = None
) -> BacktestResult:
    """Train on rows before `as_of`, score as of it, and compare with the windows after it.

    Raises:
        ValueError: the data does not reach `as_of` plus the longer window.
    """
    needed = as_of + pd.Timedelta(days=max(options.churn_window_days, options.horizon_days))
    data_end = default_as_of(tables)
    if data_end < needed:
        raise ValueError(
            f"a backtest as of {as_of.date()} needs data until {needed.date()} (the windows "
            f"after it) but the data ends on {data_end.date()}: choose an earlier --as-of"
        )
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%f")
    trained = train_models(tables.before(as_of), as_of, options, storage, f"backtest-{stamp}")
    bundle = trained.bundle
    features = build_features(tables, as_of, event_types=bundle.spec.event_types or None)
    labels = build_labels(
        tables, as_of, options.churn_window_days, options.horizon_days, options.margin_rate
    )
    scored = features.merge(labels, on="customer_id", validate="one_to_one")
    predictions = bundle.predict(scored)
    past = tables.before(as_of)

    churn_preds = {"model": predictions["churn_probability"].to_numpy()}
    churn_preds |= churn_baselines(
        past, trained.data.churn_train, scored, as_of, options.churn_window_days
    )
    spend_preds = {"model": predictions["predicted_spend"].to_numpy()}
    spend_preds |= spend_baselines(past, scored, as_of, options.horizon_days)
    churn = pd.DataFrame(
        {
            name: {k: v for k, v in churn_metrics(scored["churned"], p).items() if k in CHURN_ROWS}
            for name, p in churn_preds.items()
        }
    )
    spend = pd.DataFrame(
        {
            name: {
                k: v for k, v in spend_metrics(scored["future_spend"], p).items() if k in SPEND_ROWS
            }
            for name, p in spend_preds.items()
        }
    )
    return BacktestResult(
        churn.loc[list(CHURN_ROWS)], spend.loc[list(SPEND_ROWS)], trained, len(scored)
    )
