"""`vafa train`, `backtest`, `promote` and `profiles`: the models and what sets customers apart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vafa.cli.options import (
    AsOfOption,
    BtydOption,
    ChurnWindowOption,
    DataOption,
    DiscountOption,
    HorizonOption,
    MarginOption,
    QuarantineOption,
    SeedOption,
    TimeoutOption,
    TrialsOption,
)
from vafa.cli.steps import echo_mlflow_hint, load, quiet_optuna, resolve_as_of, timed
from vafa.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from features.schema import Tables
    from training.train import TrainOptions


def train_options(
    churn_window_days: int,
    horizon_days: int,
    margin_rate: float | None,
    discount_rate: float,
    trials: int,
    timeout: float | None,
    seed: int,
    btyd_features: bool = False,
) -> TrainOptions:
    """Options and settings merged into what training needs."""
    from training.train import TrainOptions

    settings = Settings.from_env(
        churn_window_days=churn_window_days,
        horizon_days=horizon_days,
        margin_rate=margin_rate,
        annual_discount_rate=discount_rate,
        seed=seed,
    )
    return TrainOptions(
        churn_window_days=settings.churn_window_days,
        horizon_days=settings.horizon_days,
        margin_rate=settings.margin_rate,
        annual_discount_rate=settings.annual_discount_rate,
        trials=trials,
        timeout_seconds=timeout,
        seed=settings.seed,
        btyd_features=btyd_features,
    )


def train_and_register(
    data: Path, tables: Tables, cutoff: pd.Timestamp, options: TrainOptions
) -> str:
    """Train, log and register; prints the decision and the key figures. Returns the version."""
    from training.jobs import run_training

    quiet_optuna()
    trained = timed(
        f"training as of {cutoff.date()} ({options.trials} trials per model)",
        lambda: run_training(
            tables,
            cutoff,
            options,
            tracking_uri=Settings.from_env().tracking_uri,
            data_dir=str(data),
        ),
    )
    registered, m = trained.registered, trained.result.metrics
    typer.echo(
        f"model version {registered.version} (run {registered.run_id}): {registered.decision}\n"
        f"validation out of time: churn ROC-AUC {m['churn_model_roc_auc']:.3f} (recency "
        f"{m['churn_recency_roc_auc']:.3f}, BG/NBD {m['churn_bgnbd_roc_auc']:.3f}), "
        f"Brier {m['churn_model_brier']:.4f}; spend normalized Gini "
        f"{m['spend_model_normalized_gini']:.3f} (last period "
        f"{m['spend_last_period_normalized_gini']:.3f}, BG/NBD+GG "
        f"{m['spend_bgnbd_gg_normalized_gini']:.3f}), "
        f"total error {m['spend_model_total_error']:+.1%}"
    )
    return registered.version


def train(
    data: DataOption,
    as_of: AsOfOption = None,
    trials: TrialsOption = 12,
    timeout: TimeoutOption = None,
    churn_window_days: ChurnWindowOption = 90,
    horizon_days: HorizonOption = 365,
    margin_rate: MarginOption = None,
    discount_rate: DiscountOption = 0.0,
    seed: SeedOption = 42,
    btyd_features: BtydOption = False,
    quarantine: QuarantineOption = None,
) -> None:
    """Tune, train and register the churn and spend models using only data before the date."""
    options = train_options(
        churn_window_days,
        horizon_days,
        margin_rate,
        discount_rate,
        trials,
        timeout,
        seed,
        btyd_features,
    )
    tables = load(data, quarantine).tables
    cutoff = resolve_as_of(tables, as_of)
    train_and_register(data, tables.before(cutoff), cutoff, options)
    echo_mlflow_hint()


def backtest(
    data: DataOption,
    as_of: Annotated[
        str, typer.Option("--as-of", help="Train before it, grade on what happened after it.")
    ],
    trials: TrialsOption = 12,
    timeout: TimeoutOption = None,
    churn_window_days: ChurnWindowOption = 90,
    horizon_days: HorizonOption = 365,
    margin_rate: MarginOption = None,
    discount_rate: DiscountOption = 0.0,
    seed: SeedOption = 42,
    btyd_features: BtydOption = False,
) -> None:
    """Train as of a past date as `train` does and compare model and baselines with reality."""
    from training.jobs import run_backtest

    options = train_options(
        churn_window_days,
        horizon_days,
        margin_rate,
        discount_rate,
        trials,
        timeout,
        seed,
        btyd_features,
    )
    tables = load(data).tables
    cutoff = resolve_as_of(tables, as_of)
    uri = Settings.from_env().tracking_uri
    quiet_optuna()
    result = timed(
        f"backtest as of {cutoff.date()}",
        lambda: run_backtest(tables, cutoff, options, tracking_uri=uri, data_dir=str(data)),
    )
    typer.echo(result.render())


def promote(
    version: Annotated[
        str | None, typer.Option("--version", help="Model version; default: the challenger.")
    ] = None,
) -> None:
    """Make a registered model version the champion by hand."""
    from training.registry import configure_tracking
    from training.registry import promote as set_champion

    configure_tracking(Settings.from_env().tracking_uri)
    typer.echo(f"champion is now version {set_champion(version)}")


def profiles(
    data: DataOption,
    as_of: AsOfOption = None,
    churn_window_days: ChurnWindowOption = 90,
    top: Annotated[int, typer.Option("--top", min=1, help="Features to show.")] = 15,
    out: Annotated[Path | None, typer.Option("--out", help="Full table, .csv or .parquet.")] = None,
) -> None:
    """What churned customers have in common that VIPs do not: standardised differences.

    Profiles are taken one churn window before the date, outcomes in the window after it,
    among customers who had bought within the window before (long-lost customers would only
    show that they are long lost).
    """
    import pandas as pd

    from features.build import build_features
    from features.io import write_frame
    from features.labels import build_labels
    from training.profiles import compare_profiles, vip_and_churned

    tables = load(data).tables
    end = resolve_as_of(tables, as_of)
    cutoff = end - pd.Timedelta(days=churn_window_days)
    frame = build_features(tables, cutoff)
    frame = frame[frame["recency_days"] <= churn_window_days].reset_index(drop=True)
    labels = build_labels(tables, cutoff, churn_window_days, churn_window_days)
    vip, churned = vip_and_churned(frame, labels, value="future_spend", churn="churned")
    table = compare_profiles(frame, vip, churned)
    if out is not None:
        write_frame(table, out)
    typer.echo(
        f"{int(vip.sum()):,} VIPs (top spenders who stayed) vs {int(churned.sum()):,} churned, "
        f"profiles as of {cutoff.date()}:"
    )
    typer.echo(table.head(top).round(3).to_string(index=False))
