"""The Optuna search: rows binned once per study, the models of fresh fits, stored at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
import pytest

from training.options import TrainOptions
from training.tuning import CURVE_EVERY, METRIC_OF, Split, fit_booster, tune, tune_and_fit

OPTIONS = TrainOptions(trials=6, num_threads=1, seed=7)


def _problem(objective: str) -> tuple[Split, Split]:
    """Rows where a feature only splits with small leaves (LightGBM's pre-filter would drop it)."""
    rng = np.random.default_rng(3)
    n = 1200
    x = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"f{i}" for i in range(6)])
    x["rare"] = np.where(rng.random(n) < 0.01, 1.0, 0.0)
    signal = x["f0"] + 0.5 * x["f1"] * x["f2"] + 2 * x["rare"] + rng.normal(size=n)
    if objective == "binary":
        y = (signal > 0).to_numpy(dtype=float)
    else:
        y = np.where(rng.random(n) < 0.4, 0.0, np.exp(1 + 0.5 * signal.to_numpy()))
    base = np.full(n, 0.1)
    return Split(x[:900], y[:900], base[:900]), Split(
        x[900:].reset_index(drop=True), y[900:], base[900:]
    )


@pytest.mark.parametrize("objective", ["binary", "tweedie"])
def test_every_trial_scores_what_a_fresh_fit_of_its_parameters_scores(objective: str) -> None:
    train, valid = _problem(objective)
    tuned = tune_and_fit("t", objective, train, valid, OPTIONS)
    completed = [t for t in tuned.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(completed) >= 3
    for trial in completed:
        fresh = fit_booster(
            trial.params, objective, train, valid, seed=OPTIONS.seed, num_threads=1
        )  # new Datasets, binned for this fit alone
        assert fresh.best_score["valid"][METRIC_OF[objective]] == trial.value
        assert fresh.best_iteration == trial.user_attrs["best_iteration"]
    # The kept booster is the model of the best parameters, not fitted again.
    refit = fit_booster(
        tuned.study.best_params, objective, train, valid, seed=OPTIONS.seed, num_threads=1
    )
    assert tuned.booster.model_to_string() == refit.model_to_string()
    assert tune("t", objective, train, valid, OPTIONS).best_trial.number == (
        tuned.study.best_trial.number
    )


def test_a_study_bins_its_rows_once(monkeypatch: pytest.MonkeyPatch) -> None:
    binned: list[int] = []
    construct = lgb.Dataset.construct

    def counting(self: lgb.Dataset) -> lgb.Dataset:
        if self._handle is None:
            binned.append(1)
        return construct(self)

    monkeypatch.setattr(lgb.Dataset, "construct", counting)
    train, valid = _problem("binary")
    study = tune("t", "binary", train, valid, OPTIONS)
    assert len(study.trials) == OPTIONS.trials
    assert len(binned) == 2  # the training rows and the validation rows, for every trial
    assert study.user_attrs["bin_seconds"] >= 0
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert completed and all(t.user_attrs["fit_seconds"] > 0 for t in completed)


def test_a_stored_study_is_written_when_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports: list[Any] = []
    write = optuna.storages.RDBStorage.set_trial_intermediate_value

    def counting(self: Any, *args: Any) -> None:
        reports.append(args)
        write(self, *args)

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_intermediate_value", counting)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    train, valid = _problem("binary")
    study = tune("t-churn", "binary", train, valid, OPTIONS, storage)
    assert reports == []  # no committed write per boosting round
    kept = optuna.load_study(study_name="t-churn", storage=storage)
    assert [(t.number, t.state, t.value, t.params) for t in kept.trials] == [
        (t.number, t.state, t.value, t.params) for t in study.trials
    ]
    assert kept.best_trial.number == study.best_trial.number
    assert kept.user_attrs == study.user_attrs
    for ours, stored in zip(study.trials, kept.trials, strict=True):
        last = max(ours.intermediate_values)
        assert set(stored.intermediate_values) == {
            step for step in ours.intermediate_values if step % CURVE_EVERY == 0 or step == last
        }
        assert all(
            stored.intermediate_values[s] == ours.intermediate_values[s]
            for s in stored.intermediate_values
        )
    with pytest.raises(optuna.exceptions.DuplicatedStudyError):
        tune("t-churn", "binary", train, valid, OPTIONS, storage)


def test_a_parameter_that_would_need_other_bins_fails_loudly() -> None:
    train, valid = _problem("binary")
    from training.tuning import bin_splits

    datasets = bin_splits(train, valid, seed=OPTIONS.seed, num_threads=1)
    with pytest.raises(lgb.basic.LightGBMError):
        fit_booster(
            {"max_bin": 63},
            "binary",
            train,
            valid,
            seed=OPTIONS.seed,
            num_threads=1,
            datasets=datasets,
        )
