"""Tune, fit and evaluate the churn and spend models out of time, with baselines beside them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import optuna
import pandas as pd

from features.build import build_features
from features.labels import CHURN_DEFINITIONS, ChurnDefinition
from features.population import population_mask
from features.schema import Tables
from training.baselines import churn_baselines, spend_baselines
from training.correction import CHURN, SPEND, level_shift
from training.datasets import TrainingData, build_training_data
from training.intervals import SpendIntervals, interval_metrics
from training.metrics import churn_metrics, population_metrics, spend_metrics
from training.model import IDENTITY, ModelBundle, SpendModel, discount_factor
from training.options import TrainOptions
from training.reference import fit_reference
from training.seasons import last_year_level, level_move_sd, seasonal_level
from training.targets import fit_target
from training.thresholds import SegmentThresholds, reference_population

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
    definition = churn_definition(options, tables)
    data = build_training_data(
        tables,
        as_of,
        churn_window_days=options.churn_window_days,
        horizon_days=options.horizon_days,
        margin_rate=options.margin_rate,
        n_snapshots=options.n_snapshots,
        spacing_days=options.spacing_days,
        btyd_features=options.btyd_features,
        seed=options.seed,
        max_train_rows=options.max_train_rows,
        highest_rung=options.highest_rung,
        definition=definition,
    )
    timings["features_seconds"] = time.perf_counter() - started
    log.info("training sets: %s", data.row_counts())
    spec = data.spec
    window = options.churn_window_days
    churn_active = population_mask(data.churn_valid, window, definition)
    spend_active = population_mask(data.spend_valid, window, definition)
    log.info(
        "decision population (%s): %d of %d churn and %d of %d spend validation customers",
        "subscribers" if definition == "contractual" else f"bought within {window} days",
        churn_active.sum(),
        len(churn_active),
        spend_active.sum(),
        len(spend_active),
    )

    features = build_features(tables, as_of, event_types=spec.event_types or None)
    started = time.perf_counter()
    churn = fit_target(
        CHURN,
        data.churn_train,
        data.churn_valid,
        data.churn_plan,
        spec,
        features,
        options,
        storage,
        f"{study_prefix}-churn",
        churn_active,
        constant_base=definition == "contractual",
    )
    timings["churn_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    spend = fit_target(
        SPEND,
        data.spend_train,
        data.spend_valid,
        data.spend_plan,
        spec,
        features,
        options,
        storage,
        f"{study_prefix}-spend",
        spend_active,
    )
    timings["spend_seconds"] = time.perf_counter() - started
    churn_valid = data.churn_valid["churned"].to_numpy(dtype=float)
    spend_valid = data.spend_valid["future_spend"].to_numpy(dtype=float)
    churn_p, spend_pred = churn.honest, spend.honest

    config = {
        "churn_window_days": options.churn_window_days,
        "churn_definition": definition,
        "horizon_days": options.horizon_days,
        "margin_rate": _overall_margin_rate(tables, as_of, options.margin_rate),
        "annual_discount_rate": options.annual_discount_rate,
        "discount_factor": discount_factor(options.annual_discount_rate, options.horizon_days),
        "trained_as_of": str(as_of.date()),
        "churn_valid_as_of": _date(data.churn_plan.valid),
        "spend_valid_as_of": _date(data.spend_plan.valid),
        "spend_model": "tweedie",
        "btyd_params": data.btyd_params,
        "btyd_base": {CHURN: churn.base.to_dict(), SPEND: spend.base.to_dict()},
        "correction_weight": {CHURN: churn.weight, SPEND: spend.weight},
        "ladder": {CHURN: churn.describe(), SPEND: spend.describe()},
    }
    spend_model = SpendModel("tweedie", {"spend": spend.booster}, IDENTITY)
    config["churn_base_mean"] = float(
        churn.base.churn_margin(features, options.churn_window_days).mean()
    )
    if churn.constant is not None:
        config["churn_base_logit"] = churn.constant
    bundle = ModelBundle(spec, churn.booster, IDENTITY, spend_model, config)
    # The base sets the total spend as of T; the trees redistribute it (`level_shift`).
    bundle.config["spend_level_shift"] = level_shift(
        spend.base.spend_margin(features, options.horizon_days),
        np.log(np.maximum(bundle.predict(features)["predicted_spend"].to_numpy(), 1e-300)),
    )
    # A horizon holding a peak or a low: the base's same window last year (training.seasons).
    season = seasonal_level(
        tables,
        as_of,
        options.horizon_days,
        data.spend_plan.valid,
        data.spend_plan.label_days,
        spend_valid,
        spend_pred,
        spend.base.family,
    )
    bundle.config["season"] = season.describe()
    bundle.config["spend_level_shift"] += season.log_shift
    if season.used and season.validation_index is not None:
        spend_pred = spend_pred * season.validation_index
    log.info("spend season: %s", season.describe()["decision"])
    # Segment cut points are quantiles of the model's own scores, stored with it.
    valid_scores = data.churn_valid.join(
        bundle.predict(data.churn_valid).drop(columns="customer_id")
    )
    bundle.config["segments"] = SegmentThresholds.fit(
        reference_population(valid_scores, options.churn_window_days, definition),
        churn_window_days=options.churn_window_days,
    ).to_dict()
    # Ranges (training.intervals): conformal on the honest validation predictions.
    range_metrics: dict[str, float] = {}
    if len(spend_valid):
        keys = data.spend_valid["customer_id"]
        days, valid_cutoff = data.spend_plan.label_days, data.spend_plan.valid

        def level(cutoff: pd.Timestamp) -> float | None:
            """Each snapshot's seasonal level; the validation cutoff's is known already."""
            if cutoff == valid_cutoff and season.validation_index is not None:
                return season.validation_index
            return last_year_level(tables, cutoff, days, spend.base.family)

        moves = level_move_sd(spend.totals, level if season.used else None)
        intervals = replace(SpendIntervals.fit(spend_pred, spend_valid), level_shift_sd=moves)
        bundle.config["spend_intervals"] = intervals.to_dict()
        range_metrics = interval_metrics(spend_pred, spend_valid, keys, spend_active)
    started = time.perf_counter()
    bundle.reference = fit_reference(features, bundle.predict(features), as_of)
    timings["reference_seconds"] = time.perf_counter() - started

    metrics = churn.metrics() | spend.metrics()
    if len(churn_valid):
        metrics |= population_metrics(
            churn_metrics, churn_valid, churn_p, churn_active, "churn_model"
        )
    if len(spend_valid):
        metrics |= population_metrics(
            spend_metrics, spend_valid, spend_pred, spend_active, "spend_model"
        )
    metrics |= _baselines(tables, data, options, churn_active, spend_active)
    metrics |= range_metrics
    if season.index is not None:
        metrics["spend_season_index"] = season.index
    metrics["spend_season_used"] = float(season.used)
    metrics["churn_best_iteration"] = float(churn.booster.best_iteration)
    metrics["rows_churn_valid_active"] = float(churn_active.sum())
    metrics["rows_spend_valid_active"] = float(spend_active.sum())
    return TrainResult(
        bundle=bundle,
        data=data,
        metrics=metrics,
        params={t.target: t.study.best_params for t in (churn, spend) if t.study is not None},
        studies={t.target: t.study for t in (churn, spend) if t.study is not None},
        valid_predictions={
            "churn": pd.DataFrame({"y": churn_valid, "p": churn_p, "active": churn_active}),
            "spend": pd.DataFrame({"y": spend_valid, "pred": spend_pred, "active": spend_active}),
        },
        timings=timings,
        tables=tables,
        as_of=as_of,
    )


def churn_definition(options: TrainOptions, tables: Tables) -> ChurnDefinition:
    """What churn means for this run: as asked, or contractual when there are subscriptions."""
    asked = options.churn_definition
    if asked == "auto":
        return "contractual" if tables.subscriptions is not None else "inactivity"
    if asked not in CHURN_DEFINITIONS:
        raise ValueError(
            f"unknown churn definition {asked!r}: expected auto or one of {list(CHURN_DEFINITIONS)}"
        )
    return cast(ChurnDefinition, asked)


def _date(stamp: pd.Timestamp | None) -> str | None:
    return str(stamp.date()) if stamp is not None else None


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
    definition = churn_definition(options, tables)
    churn = churn_baselines(
        tables,
        data.churn_train,
        data.churn_valid,
        data.churn_plan.valid,
        options.churn_window_days,
        definition,
        data.spec.event_types,
    )
    for name, p in churn.items():
        out |= population_metrics(
            churn_metrics, data.churn_valid["churned"], p, churn_active, f"churn_{name}"
        )
    spend = spend_baselines(
        tables, data.spend_valid, data.spend_plan.valid, options.horizon_days, definition
    )
    for name, pred in spend.items():
        actual = data.spend_valid["future_spend"]
        out |= population_metrics(spend_metrics, actual, pred, spend_active, f"spend_{name}")
    return out
