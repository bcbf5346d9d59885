"""The training jobs `vafa train` and `vafa backtest` run: train, plot, log to MLflow, register."""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

import mlflow
from features.schema import Tables
from training.backtest import BacktestResult, backtest
from training.datasets import data_fingerprint
from training.plots import write_plots
from training.promotion import ActionsOf
from training.registry import Registered, configure_tracking, log_training_run, optuna_storage
from training.train import TrainOptions, TrainResult, train_models


@dataclass(frozen=True)
class TrainingRun:
    """A trained bundle and what became of it in the registry."""

    result: TrainResult
    registered: Registered


def run_training(
    tables: Tables,
    as_of: pd.Timestamp,
    options: TrainOptions,
    *,
    tracking_uri: str,
    data_dir: str,
    actions: ActionsOf | None = None,
) -> TrainingRun:
    """Tune and train as of a date, log the run with its plots, register it, promote if it wins.

    The MLflow run starts before the training, so its duration is the training's, and a
    failure leaves it marked failed.

    Args:
        tables: the rows to learn from (the caller cuts them at `as_of`); their fingerprint
            is logged with the run.
        as_of: the training date.
        options: windows, economics, tuning budget and seed.
        tracking_uri: the MLflow store; the Optuna studies are kept beside a local one.
        data_dir: the data folder, logged with the run.
        actions: the recommended action of feature rows (a serving function the command
            passes in), to report how actions would move against the champion.

    Returns:
        The training result and the registered version with its promotion decision.
    """
    configure_tracking(tracking_uri)
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S")
    with mlflow.start_run(run_name=f"train-{as_of.date()}"):
        result = train_models(
            tables, as_of, options, optuna_storage(tracking_uri), f"train-{stamp}"
        )
        with tempfile.TemporaryDirectory() as tmp:
            plots = write_plots(result, Path(tmp))
            registered = log_training_run(
                result,
                options,
                fingerprint=data_fingerprint(tables),
                data_dir=data_dir,
                plots=plots,
                actions=actions,
            )
    return TrainingRun(result, registered)


def run_backtest(
    tables: Tables,
    as_of: pd.Timestamp,
    options: TrainOptions,
    *,
    tracking_uri: str,
    data_dir: str,
    every_rung: bool = False,
) -> BacktestResult:
    """Backtest as of a past date and log the side-by-side metrics as an MLflow run.

    Args:
        tables: all rows: before `as_of` to train, after it to grade.
        as_of: the date to train as of.
        options: windows, economics, tuning budget and seed.
        tracking_uri: the MLflow store; the Optuna studies are kept beside a local one.
        data_dir: the data folder, logged with the run.
        every_rung: also grade the rungs of the ladder below the one used.

    Returns:
        The model's and the baselines' metrics.

    Raises:
        ValueError: the data does not reach `as_of` plus the longer window.
    """
    configure_tracking(tracking_uri)
    with mlflow.start_run(run_name=f"backtest-{as_of.date()}"):
        result = backtest(tables, as_of, options, optuna_storage(tracking_uri), every_rung)
        mlflow.log_params(
            {
                "kind": "backtest",
                "as_of": str(as_of.date()),
                "data_dir": data_dir,
                **{f"option_{k}": v for k, v in asdict(options).items()},
            }
        )
        mlflow.log_metrics({k: v for k, v in result.flat_metrics().items() if math.isfinite(v)})
        mlflow.log_text(result.render(), "backtest.txt")
    return result
