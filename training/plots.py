"""Diagnostic plots of a training run, written as PNG files for MLflow."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import lightgbm as lgb
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from training.datasets import FeatureSpec
from training.metrics import calibration_table, decile_table
from training.model import predict
from training.train import TrainResult

TOP_FEATURES = 20
SHAP_SAMPLE = 5000


def write_plots(result: TrainResult, folder: Path) -> dict[str, Path]:
    """Calibration curve, decile/lift chart, feature importance and SHAP summary; returns paths.

    Calibration and deciles are drawn over the decision population (customers who bought within
    the churn window), whose figures the run reports; every customer when it is empty.
    """
    folder.mkdir(parents=True, exist_ok=True)
    churn, spend = (
        _decision_population(result.valid_predictions[name]) for name in ("churn", "spend")
    )
    bundle = result.bundle
    shap = shap_summary(bundle.churn, bundle.spec, result.data.churn_valid)
    gain = pd.Series(
        bundle.churn.feature_importance(importance_type="gain"), index=bundle.churn.feature_name()
    )
    return {
        "calibration": _calibration(churn, folder / "churn_calibration.png"),
        "churn_deciles": _deciles(
            churn["y"], churn["p"], "churn rate", folder / "churn_deciles.png"
        ),
        "spend_deciles": _deciles(spend["y"], spend["pred"], "spend", folder / "spend_deciles.png"),
        "importance": _bars(gain, "gain", folder / "churn_feature_importance.png"),
        "shap": _bars(shap, "mean |SHAP| (log-odds)", folder / "churn_shap_summary.png"),
    }


def shap_summary(
    booster: lgb.Booster, spec: FeatureSpec, frame: pd.DataFrame, rows: int = SHAP_SAMPLE
) -> pd.Series:
    """Mean |SHAP| (log-odds) per feature over a seeded sample of at most `rows` rows.

    TreeSHAP costs thousands of rows a second, and the validation snapshot holds every
    customer: a sample of a few thousand shows the same summary in seconds at any scale.
    """
    sample = frame.sample(rows, random_state=0) if len(frame) > rows else frame
    contributions = predict(booster, spec.matrix(sample), pred_contrib=True)[:, :-1]
    return pd.Series(np.abs(contributions).mean(axis=0), index=spec.columns)


def _decision_population(predictions: pd.DataFrame) -> pd.DataFrame:
    """The rows of active customers, when the predictions say which and there are any."""
    if "active" not in predictions or not predictions["active"].any():
        return predictions
    return predictions[predictions["active"].to_numpy(dtype=bool)]


def _calibration(churn: pd.DataFrame, path: Path) -> Path:
    table = calibration_table(churn["y"], churn["p"])
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect")
    ax.plot(table["p_mean"], table["y_rate"], marker="o", label="model")
    ax.set(
        xlabel="predicted churn probability",
        ylabel="observed churn rate",
        title="Churn calibration (out of time, active customers)",
    )
    ax.legend()
    return _save(fig, path)


def _deciles(y: pd.Series, pred: pd.Series, what: str, path: Path) -> Path:
    table = decile_table(y, pred)
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["pred_mean"], width=0.4, label="predicted")
    ax.bar(x + 0.2, table["actual_mean"], width=0.4, label="actual")
    ax.set(
        xlabel="decile by prediction (1 = highest)",
        ylabel=what,
        title=f"{what} by decile (active customers)",
    )
    ax.set_xticks(x, [str(d) for d in table["decile"]])
    ax.legend()
    return _save(fig, path)


def _bars(values: pd.Series, label: str, path: Path) -> Path:
    top = values.sort_values().tail(TOP_FEATURES)
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(top) + 1))
    ax.barh(top.index, top.to_numpy())
    ax.set(xlabel=label, title=f"Churn model: top features by {label}")
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
