"""Tune, fit and evaluate the churn and spend models out of time, with baselines beside them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import optuna
import pandas as pd

from features.build import build_features
from features.population import active_mask
from features.schema import Tables
from training.baselines import PROBABILITY_BOUNDS, churn_baselines, spend_baselines
from training.datasets import FeatureSpec, TrainingData, build_training_data
from training.metrics import churn_metrics, population_metrics, spend_metrics
from training.model import Calibrator, ModelBundle, SpendModel, discount_factor, predict
from training.options import TrainOptions
from training.reference import fit_reference
from training.thresholds import SegmentThresholds, reference_population
from training.tuning import Split, fit_booster, tune

log = logging.getLogger(__name__)

__all__ = ["TrainOptions", "TrainResult", "train_models"]


@dataclass
class TrainResult:
    """A trained bundle with everything the run log needs.

    Metrics named `<target>_<model>_<metric>` are over the decision population of each
    validation snapshot (`features.population`), `..._all` over every customer.
    `valid_predictions` hold every validation row with an `active` column. `tables` are the
    rows trained from (before `as_of`): promotion builds the champion's own features from them.
    """

    bundle: ModelBundle
    data: TrainingData
    metrics: dict[str, float]
    params: dict[str, Any]
    studies: dict[str, optuna.Study]
    valid_predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    tables: Tables | None = None
    as_of: pd.Timestamp | None = None


def crossfit(
    raw: np.ndarray, target: np.ndarray, keys: pd.Series, bounds: tuple[float, float] | None
) -> np.ndarray:
    """Calibrated validation predictions where no row is calibrated by a map that saw it.

    Two folds by customer hash: the honest numbers for a calibrator fitted on the same snapshot.
    """
    fold = (pd.util.hash_pandas_object(keys, index=False).to_numpy() % 2).astype(bool)
    out = np.empty_like(raw, dtype=float)
    for held_out in (fold, ~fold):
        if held_out.all() or not held_out.any():
            return Calibrator.fit(raw, target, bounds=bounds)(raw)
        out[held_out] = Calibrator.fit(raw[~held_out], target[~held_out], bounds=bounds)(
            raw[held_out]
        )
    return out


def _xy(frame: pd.DataFrame, spec: FeatureSpec, label: str) -> Split:
    return Split(spec.matrix(frame), frame[label].to_numpy(dtype=float))


def train_models(
    tables: Tables,
    as_of: pd.Timestamp,
    options: TrainOptions,
    storage: str | None = None,
    study_prefix: str = "vafa",
) -> TrainResult:
    """Build the out-of-time sets, tune both models, calibrate them, and evaluate with baselines.

    Raises:
        HistoryTooShortError: the data does not cover the windows.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    data = build_training_data(
        tables,
        as_of,
        churn_window_days=options.churn_window_days,
        horizon_days=options.horizon_days,
        margin_rate=options.margin_rate,
        n_snapshots=options.n_snapshots,
        spacing_days=options.spacing_days,
        btyd_features=options.btyd_features,
    )
    timings["features_seconds"] = time.perf_counter() - started
    log.info("training sets: %s", data.row_counts())
    spec = data.spec
    churn_active = active_mask(data.churn_valid, options.churn_window_days)
    spend_active = active_mask(data.spend_valid, options.churn_window_days)
    log.info(
        "decision population (bought within %d days): %d of %d churn and %d of %d spend "
        "validation customers",
        options.churn_window_days,
        churn_active.sum(),
        len(churn_active),
        spend_active.sum(),
        len(spend_active),
    )

    started = time.perf_counter()
    churn_train, churn_valid = (
        _xy(data.churn_train, spec, "churned"),
        _xy(data.churn_valid, spec, "churned"),
    )
    churn_study = tune(
        f"{study_prefix}-churn", "binary", churn_train, churn_valid, options, storage
    )
    churn = fit_booster(
        churn_study.best_params,
        "binary",
        churn_train,
        churn_valid,
        seed=options.seed,
        num_threads=options.num_threads,
    )
    churn_raw = predict(churn, churn_valid[0])
    churn_calibrator = Calibrator.fit(churn_raw, churn_valid[1], bounds=PROBABILITY_BOUNDS)
    churn_p = crossfit(
        churn_raw, churn_valid[1], data.churn_valid["customer_id"], PROBABILITY_BOUNDS
    )
    timings["churn_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    spend_train, spend_valid = (
        _xy(data.spend_train, spec, "future_spend"),
        _xy(data.spend_valid, spec, "future_spend"),
    )
    spend_study = tune(
        f"{study_prefix}-spend", "tweedie", spend_train, spend_valid, options, storage
    )
    spend_model, spend_pred, spend_comparison = _fit_spend(
        spend_study.best_params, data, spec, spend_train, spend_valid, options, spend_active
    )
    timings["spend_seconds"] = time.perf_counter() - started

    config = {
        "churn_window_days": options.churn_window_days,
        "horizon_days": options.horizon_days,
        "margin_rate": _overall_margin_rate(tables, as_of, options.margin_rate),
        "annual_discount_rate": options.annual_discount_rate,
        "discount_factor": discount_factor(options.annual_discount_rate, options.horizon_days),
        "trained_as_of": str(as_of.date()),
        "churn_valid_as_of": str(data.churn_plan.valid.date()),
        "spend_valid_as_of": str(data.spend_plan.valid.date()),
        "spend_model": spend_model.kind,
        "btyd_params": data.btyd_params,
    }
    bundle = ModelBundle(spec, churn, churn_calibrator, spend_model, config)
    # Segment cut points are quantiles of the model's own scores, stored with it.
    valid_scores = data.churn_valid.join(
        bundle.predict(data.churn_valid).drop(columns="customer_id")
    )
    bundle.config["segments"] = SegmentThresholds.fit(
        reference_population(valid_scores, options.churn_window_days),
        churn_window_days=options.churn_window_days,
    ).to_dict()
    started = time.perf_counter()
    bundle.reference = _reference(bundle, tables, as_of)
    timings["reference_seconds"] = time.perf_counter() - started

    metrics = population_metrics(
        churn_metrics, churn_valid[1], churn_p, churn_active, "churn_model"
    )
    metrics |= population_metrics(
        spend_metrics, spend_valid[1], spend_pred, spend_active, "spend_model"
    )
    metrics |= spend_comparison
    metrics |= _baselines(tables, data, options, churn_active, spend_active)
    metrics["churn_best_iteration"] = float(churn.best_iteration)
    metrics["rows_churn_valid_active"] = float(churn_active.sum())
    metrics["rows_spend_valid_active"] = float(spend_active.sum())
    return TrainResult(
        bundle=bundle,
        data=data,
        metrics=metrics,
        params={"churn": churn_study.best_params, "spend": spend_study.best_params},
        studies={"churn": churn_study, "spend": spend_study},
        valid_predictions={
            "churn": pd.DataFrame({"y": churn_valid[1], "p": churn_p, "active": churn_active}),
            "spend": pd.DataFrame(
                {"y": spend_valid[1], "pred": spend_pred, "active": spend_active}
            ),
        },
        timings=timings,
        tables=tables,
        as_of=as_of,
    )


def _reference(bundle: ModelBundle, tables: Tables, as_of: pd.Timestamp) -> dict[str, Any]:
    """Histograms of every customer's features and scores as of the training date.

    The population the model is trained *for* (everyone, as of the day it is trained), not the
    stacked snapshots it learned from (older cutoffs, other seasons): nightly scoring soon after
    compares like with like, so drift means the population moved, not that time passed.
    """
    features = build_features(tables, as_of, event_types=bundle.spec.event_types or None)
    return fit_reference(features, bundle.predict(features), as_of)


def _fit_spend(
    params: dict[str, Any],
    data: TrainingData,
    spec: FeatureSpec,
    train: Split,
    valid: Split,
    options: TrainOptions,
    active: np.ndarray,
) -> tuple[SpendModel, np.ndarray, dict[str, float]]:
    """Fit the Tweedie and the hurdle spend models; keep the one ranking better out of time.

    "Better" is judged on the decision population (`active`), the customers acted on; on
    every customer when it is empty.
    """
    fit = partial(fit_booster, seed=options.seed, num_threads=options.num_threads)
    tweedie = {"spend": fit(params, "tweedie", train, valid)}
    tree_params = {k: v for k, v in params.items() if k != "tweedie_variance_power"}
    bought_train, bought_valid = train[1] > 0, valid[1] > 0
    hurdle = {
        "buy": fit(
            tree_params,
            "binary",
            Split(train.x, bought_train.astype(float)),
            Split(valid.x, bought_valid.astype(float)),
        )
    }
    if bought_train.sum() > 20 and bought_valid.sum() > 5:
        hurdle["amount"] = fit(
            tree_params,
            "gamma",
            Split(train.x[bought_train], train.y[bought_train]),
            Split(valid.x[bought_valid], valid.y[bought_valid]),
        )
    candidates = {"tweedie": tweedie} | ({"hurdle": hurdle} if "amount" in hurdle else {})
    keys = data.spend_valid["customer_id"]
    results: dict[str, tuple[SpendModel, np.ndarray, dict[str, float]]] = {}
    for kind, boosters in candidates.items():
        placeholder = SpendModel(kind, boosters, Calibrator([0.0, 1.0], [0.0, 1.0]))
        raw = placeholder.raw(valid[0])
        model = SpendModel(kind, boosters, Calibrator.fit(raw, valid[1], bounds=(0.0, np.inf)))
        pred = crossfit(raw, valid[1], keys, (0.0, np.inf))
        judged = active if active.any() else np.ones_like(active, dtype=bool)
        results[kind] = (model, pred, spend_metrics(valid[1][judged], pred[judged]))
    comparison = {
        f"spend_{kind}_{k}": v
        for kind, r in results.items()
        for k, v in r[2].items()
        if k in ("normalized_gini", "decile_mape", "total_error")
    }
    best = max(
        results,
        key=lambda k: (
            np.nan_to_num(results[k][2]["normalized_gini"]),
            -np.nan_to_num(results[k][2]["decile_mape"], nan=1e9),
        ),
    )
    log.info(
        "spend model: %s kept (normalized Gini %s)",
        best,
        {k: round(r[2]["normalized_gini"], 4) for k, r in results.items()},
    )
    model, pred, _ = results[best]
    return model, pred, comparison


def _overall_margin_rate(tables: Tables, as_of: pd.Timestamp, configured: float) -> float:
    """Margin per unit of revenue before `as_of` from the data's margin column, else configured."""
    tx = tables.transactions
    if "margin" not in tx.columns:
        return configured
    past = tx[(tx["ts"] < as_of) & tx["margin"].notna()]
    revenue = float(past["amount"].sum())
    return float(past["margin"].sum()) / revenue if revenue > 0 else configured


def _baselines(
    tables: Tables,
    data: TrainingData,
    options: TrainOptions,
    churn_active: np.ndarray,
    spend_active: np.ndarray,
) -> dict[str, float]:
    """Every baseline's metrics on the same validation rows and populations as the models."""
    out: dict[str, float] = {}
    churn = churn_baselines(
        tables, data.churn_train, data.churn_valid, data.churn_plan.valid, options.churn_window_days
    )
    for name, p in churn.items():
        out |= population_metrics(
            churn_metrics, data.churn_valid["churned"], p, churn_active, f"churn_{name}"
        )
    spend = spend_baselines(tables, data.spend_valid, data.spend_plan.valid, options.horizon_days)
    for name, pred in spend.items():
        actual = data.spend_valid["future_spend"]
        out |= population_metrics(spend_metrics, actual, pred, spend_active, f"spend_{name}")
    return out
