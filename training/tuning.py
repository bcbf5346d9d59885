"""LightGBM fits and their Optuna search: the search space, one early-stopped fit, the study."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
from optuna_integration import LightGBMPruningCallback

from training.options import TrainOptions
from training.progress import TrialProgress


class Split(NamedTuple):
    """Rows one booster learns or is early-stopped on: inputs, target, and an optional base.

    `base` is a raw score (log-odds, or log of the mean) per row that the trees start from and
    correct, as LightGBM's `init_score`: the trees never see it, so a prediction adds it back.
    """

    x: pd.DataFrame
    y: np.ndarray
    base: np.ndarray | None = None


MAX_ROUNDS = 2000
EARLY_STOPPING_ROUNDS = 50


MAX_DEPTH = 6  # see suggest_params
LEARNING_RATES = {"binary": (0.06, 0.3), "default": (0.02, 0.2)}  # see suggest_params


def suggest_params(trial: optuna.Trial, objective: str) -> dict[str, Any]:
    """The search space, in one place: LightGBM parameters for one trial.

    Reasons are TreeSHAP values of the churn model, whose cost grows with trees x leaves x
    depth squared, and the nightly run computes them for a third of the base. So depth is
    capped at 6: leaf-wise trees left uncapped grew 14 deep on average (25 at most), which
    made TreeSHAP 5-8x slower; and the churn model's learning rate starts at 0.06, which
    early-stops at about a third of the trees. Measured on 20k generated customers, 8 trials
    (validation ROC-AUC / Brier): uncapped 0.9677 / 0.0680; depth <= 6 0.9675 / 0.0682 (311
    trees, TreeSHAP 1,597 rows/s); and learning rate >= 0.06 0.9672 / 0.0686 (111 trees,
    5,268 rows/s).
    """
    low, high = LEARNING_RATES.get(objective, LEARNING_RATES["default"])
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", low, high, log=True),
        "max_depth": trial.suggest_int("max_depth", 3, MAX_DEPTH),
        "num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 10, 300, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
    }
    if objective == "tweedie":
        params["tweedie_variance_power"] = trial.suggest_float("tweedie_variance_power", 1.05, 1.9)
    return params


METRIC_OF = {"binary": "binary_logloss", "tweedie": "tweedie", "gamma": "gamma"}


def fit_booster(
    params: dict[str, Any],
    objective: str,
    train: Split,
    valid: Split,
    *,
    seed: int,
    num_threads: int,
    trial: optuna.Trial | None = None,
) -> lgb.Booster:
    """One LightGBM model, early-stopped on the (later) validation snapshot."""
    full = {
        **params,
        "objective": objective,
        "metric": METRIC_OF[objective],
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "bagging_freq": 1,
        "num_threads": num_threads,
        "verbosity": -1,
    }
    dtrain = lgb.Dataset(train.x, train.y, init_score=train.base, free_raw_data=False)
    dvalid = lgb.Dataset(
        valid.x, valid.y, init_score=valid.base, reference=dtrain, free_raw_data=False
    )
    callbacks: list[Callable[..., Any]] = [lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)]
    if trial is not None:
        callbacks.append(LightGBMPruningCallback(trial, METRIC_OF[objective], valid_name="valid"))
    return lgb.train(
        full, dtrain, MAX_ROUNDS, valid_sets=[dvalid], valid_names=["valid"], callbacks=callbacks
    )


def _objective(
    trial: optuna.Trial,
    objective: str,
    train: Split,
    valid: Split,
    seed: int,
    num_threads: int,
) -> float:
    booster = fit_booster(
        suggest_params(trial, objective),
        objective,
        train,
        valid,
        seed=seed,
        num_threads=num_threads,
        trial=trial,
    )
    trial.set_user_attr("best_iteration", booster.best_iteration)
    return float(booster.best_score["valid"][METRIC_OF[objective]])


def tune(
    name: str,
    objective: str,
    train: Split,
    valid: Split,
    options: TrainOptions,
    storage: str | None = None,
) -> optuna.Study:
    """A seeded TPE search with median pruning; the study is kept in `storage` when given.

    Each finished trial is reported (`training.progress`): a bar on a terminal, a log line
    otherwise.
    """
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=options.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=20),
        load_if_exists=False,
    )
    progress = TrialProgress(f"{name.rsplit('-', 1)[-1]} model", options.trials)
    try:
        study.optimize(
            partial(
                _objective,
                objective=objective,
                train=train,
                valid=valid,
                seed=options.seed,
                num_threads=options.num_threads,
            ),
            n_trials=options.trials,
            timeout=options.timeout_seconds,
            gc_after_trial=True,
            callbacks=[progress],
        )
    finally:
        progress.close()
    return study
