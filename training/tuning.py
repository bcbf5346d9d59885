"""LightGBM fits and their Optuna search: the search space, one early-stopped fit, the study.

Two costs dominated tuning and are gone. The rows are binned into LightGBM `Dataset`s once
per study and every trial (and the final model) trains on them: binning cost about as much
as a pruned trial, so the parameters that shape the bins are fixed (`DATASET_PARAMS`), not
searched. And the study runs in memory and is copied to its storage when it ends: pruning
reports every boosting round, and each report was a committed SQLite write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
# A stored study keeps each trial's validation curve at every this many boosting rounds.
CURVE_EVERY = 10
# How rows are binned, the same for every trial so one binning serves the whole study.
# `feature_pre_filter` off: with it on, LightGBM drops the features `min_child_samples`
# cannot split at binning time, so a Dataset would be tied to one trial's value.
DATASET_PARAMS: dict[str, Any] = {"max_bin": 255, "min_data_in_bin": 3, "feature_pre_filter": False}


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

    Nothing here may change how rows are binned (`DATASET_PARAMS`): the study's Datasets
    are built once.
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


# Trials are compared by one loss: the Tweedie metric is the deviance at each trial's own
# power, whose values fall as the power rises whatever the fit, so spend is judged by the
# Poisson deviance, which no trial's parameters change.
METRIC_OF = {"binary": "binary_logloss", "tweedie": "poisson", "gamma": "gamma"}


def _common_params(seed: int, num_threads: int) -> dict[str, Any]:
    """What every Dataset and fit share: seeds, threads, and the binning."""
    return {
        **DATASET_PARAMS,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": num_threads,
        "verbosity": -1,
    }


@dataclass(frozen=True)
class Datasets:
    """A train and a validation Split binned once (the validation set on the training bins)."""

    train: lgb.Dataset
    valid: lgb.Dataset


def bin_splits(train: Split, valid: Split, *, seed: int, num_threads: int) -> Datasets:
    """The LightGBM Datasets of a train and a validation Split, constructed now.

    Raw rows are not kept: a fit whose parameters would need other bins fails loudly
    instead of re-binning in silence.
    """
    params = _common_params(seed, num_threads)
    dtrain = lgb.Dataset(
        train.x, train.y, init_score=train.base, params=params, free_raw_data=True
    ).construct()
    dvalid = lgb.Dataset(
        valid.x, valid.y, init_score=valid.base, reference=dtrain, params=params, free_raw_data=True
    ).construct()
    return Datasets(dtrain, dvalid)


def fit_booster(
    params: dict[str, Any],
    objective: str,
    train: Split,
    valid: Split,
    *,
    seed: int,
    num_threads: int,
    trial: optuna.Trial | None = None,
    datasets: Datasets | None = None,
) -> lgb.Booster:
    """One LightGBM model, early-stopped on the (later) validation snapshot.

    Args:
        params: the trial's parameters (`suggest_params`).
        objective: a LightGBM objective of `METRIC_OF`.
        train: the rows learned from.
        valid: the rows early-stopped on.
        seed: seeds the binning sample, bagging and feature sampling.
        num_threads: LightGBM threads.
        trial: the Optuna trial to report to (pruning), if any.
        datasets: `train` and `valid` already binned (`bin_splits` with the same seed);
            binned here when None. Either way the model is the same.
    """
    if datasets is None:
        datasets = bin_splits(train, valid, seed=seed, num_threads=num_threads)
    full = {
        **_common_params(seed, num_threads),
        **params,  # one that would change the bins fails loudly (LightGBMError)
        "objective": objective,
        "metric": METRIC_OF[objective],
        "bagging_freq": 1,
    }
    callbacks: list[Callable[..., Any]] = [lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)]
    if trial is not None:
        callbacks.append(LightGBMPruningCallback(trial, METRIC_OF[objective], valid_name="valid"))
    return lgb.train(
        full,
        datasets.train,
        MAX_ROUNDS,
        valid_sets=[datasets.valid],
        valid_names=["valid"],
        callbacks=callbacks,
    )


@dataclass
class _BestBooster:
    """The booster of the best completed trial so far (ties: the earliest, as Optuna's best)."""

    number: int = -1
    value: float = float("inf")
    booster: lgb.Booster | None = field(default=None, repr=False)

    def offer(self, number: int, value: float, booster: lgb.Booster) -> None:
        if value < self.value:
            self.number, self.value, self.booster = number, value, booster


def _objective(
    trial: optuna.Trial,
    objective: str,
    train: Split,
    valid: Split,
    seed: int,
    num_threads: int,
    datasets: Datasets,
    best: _BestBooster,
) -> float:
    params = suggest_params(trial, objective)
    started = time.perf_counter()
    booster = fit_booster(
        params,
        objective,
        train,
        valid,
        seed=seed,
        num_threads=num_threads,
        trial=trial,
        datasets=datasets,
    )
    trial.set_user_attr("fit_seconds", time.perf_counter() - started)
    trial.set_user_attr("best_iteration", booster.best_iteration)
    value = float(booster.best_score["valid"][METRIC_OF[objective]])
    best.offer(trial.number, value, booster)
    return value


@dataclass(frozen=True)
class Tuned:
    """A finished study and the booster of its best parameters."""

    study: optuna.Study
    booster: lgb.Booster


def _run_study(
    name: str,
    objective: str,
    train: Split,
    valid: Split,
    options: TrainOptions,
    storage: str | None,
) -> tuple[optuna.Study, Datasets, _BestBooster]:
    """The seeded study on Datasets binned once, with the best trial's booster kept.

    The study runs in memory and is copied into `storage` (when given) once it ends (`_keep`);
    a name already taken there is refused before any work. The study records `bin_seconds` (the
    binning) and each completed trial its `fit_seconds`: with the best trial's, the cost of
    one plain LightGBM fit of the final parameters (`benchmarks/training.py`).
    """
    kept = None if storage is None else optuna.storages.get_storage(storage)
    if kept is not None and name in optuna.get_all_study_names(kept):
        raise optuna.exceptions.DuplicatedStudyError(f"a study named {name!r} is in {storage}")
    started = time.perf_counter()
    datasets = bin_splits(train, valid, seed=options.seed, num_threads=options.num_threads)
    binned = time.perf_counter() - started
    best = _BestBooster()
    memory = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        study_name=name,
        storage=memory,
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
                datasets=datasets,
                best=best,
            ),
            n_trials=options.trials,
            timeout=options.timeout_seconds,
            gc_after_trial=True,
            callbacks=[progress],
        )
    finally:
        progress.close()
    study.set_user_attr("bin_seconds", binned)
    if kept is not None:
        _keep(study, kept)
    return study, datasets, best


def _keep(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Copy a finished study into `storage`, with each trial's curve every `CURVE_EVERY` rounds.

    A stored round costs a few milliseconds (SQLAlchemy), and a study reports thousands.
    """
    kept = optuna.create_study(study_name=study.study_name, storage=storage, direction="minimize")
    for key, value in study.user_attrs.items():
        kept.set_user_attr(key, value)
    trials = []
    for trial in study.get_trials(deepcopy=True):
        rounds = sorted(trial.intermediate_values)
        trial.intermediate_values = {
            step: value
            for step, value in trial.intermediate_values.items()
            if step % CURVE_EVERY == 0 or step == rounds[-1]
        }
        trials.append(trial)
    kept.add_trials(trials)


def tune_and_fit(
    name: str,
    objective: str,
    train: Split,
    valid: Split,
    options: TrainOptions,
    storage: str | None = None,
) -> Tuned:
    """`tune`, and the model of the best parameters without fitting it again.

    The best trial's booster is kept as the study runs: it is the model `fit_booster` of
    `study.best_params` returns (same bins, same seed), one fit sooner. It is fitted again
    only when it was not kept (the best trial is not one of this run's).
    """
    study, datasets, best = _run_study(name, objective, train, valid, options, storage)
    booster = best.booster
    if booster is None or best.number != study.best_trial.number:
        booster = fit_booster(
            study.best_params,
            objective,
            train,
            valid,
            seed=options.seed,
            num_threads=options.num_threads,
            datasets=datasets,
        )
    return Tuned(study, booster)


def tune(
    name: str,
    objective: str,
    train: Split,
    valid: Split,
    options: TrainOptions,
    storage: str | None = None,
) -> optuna.Study:
    """A seeded TPE search with median pruning; the study is kept in `storage` when given.

    The rows are binned once for all trials (`bin_splits`). Each finished trial is reported
    (`training.progress`): a bar on a terminal, a log line otherwise. `tune_and_fit` also
    returns the best trial's model.
    """
    return _run_study(name, objective, train, valid, options, storage)[0]
