"""`vafa train`, `backtest`, `promote` and `profiles`: the models and what sets customers apart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vafa.cli.options import (
    AllowFutureOption,
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
    from training.backtest import BacktestResult
    from training.jobs import TrainingRun
    from training.model import ModelBundle
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
    data: Path,
    tables: Tables,
    cutoff: pd.Timestamp,
    options: TrainOptions,
    tracking_uri: str | None = None,
) -> TrainingRun:
    """Train, log and register; prints the decision and the key figures.

    Returns the trained bundle and its registered version, in `tracking_uri` (default: the
    settings' registry).
    """
    from training.jobs import run_training

    quiet_optuna()
    trained = timed(
        f"training as of {cutoff.date()} ({options.trials} trials per model)",
        lambda: run_training(
            tables,
            cutoff,
            options,
            tracking_uri=tracking_uri or Settings.from_env().tracking_uri,
            data_dir=str(data),
            actions=recommended_actions,
        ),
    )
    registered = trained.registered
    typer.echo(
        f"model version {registered.version} (run {registered.run_id}): {registered.decision}"
    )
    if registered.shift:
        typer.echo(registered.shift)
    figures = trained.result.metrics | trained.result.data.row_counts()
    typer.echo(
        validation_table(figures, options.churn_window_days, trained.result.bundle.churn_definition)
    )
    return trained


# Rows of `vafa train`'s validation table: (label, metric name, format).
VALIDATION_ROWS = (
    ("churn ROC-AUC", "churn_model_roc_auc", "{:.3f}"),
    ("  recency baseline", "churn_recency_roc_auc", "{:.3f}"),
    ("  BG/NBD baseline", "churn_bgnbd_roc_auc", "{:.3f}"),
    ("  event-count logistic baseline", "churn_event_counts_logit_roc_auc", "{:.3f}"),
    ("  counts+payments LightGBM baseline", "churn_counts_payments_lgbm_roc_auc", "{:.3f}"),
    ("churn Brier", "churn_model_brier", "{:.4f}"),
    ("churn top-decile lift", "churn_model_top_decile_lift", "{:.2f}"),
    ("  recency baseline", "churn_recency_top_decile_lift", "{:.2f}"),
    ("observed churn rate", "churn_model_base_rate", "{:.1%}"),
    ("spend normalized Gini", "spend_model_normalized_gini", "{:.3f}"),
    ("  last-period baseline", "spend_last_period_normalized_gini", "{:.3f}"),
    ("  BG/NBD+GG baseline", "spend_bgnbd_gg_normalized_gini", "{:.3f}"),
    ("spend total error", "spend_model_total_error", "{:+.1%}"),
)


ROW_COUNTS = (
    "rows_churn_valid_active",
    "rows_churn_valid",
    "rows_spend_valid_active",
    "rows_spend_valid",
)


def validation_table(
    metrics: dict[str, float], churn_window_days: int, definition: str = "inactivity"
) -> str:
    """The out-of-time figures on the decision population, the all-customer ones beside them.

    A baseline the run did not fit (the usage models outside contractual churn) has no row.
    """
    import pandas as pd

    from features.population import population_rule
    from training.metrics import ALL_CUSTOMERS

    rows = [row for row in VALIDATION_ROWS if "baseline" not in row[0] or row[1] in metrics]
    counts = {name: int(metrics.get(name, 0)) for name in ROW_COUNTS}
    table = pd.DataFrame(
        {
            heading: [fmt.format(metrics.get(name + suffix, float("nan"))) for _, name, fmt in rows]
            for heading, suffix in (("active", ""), ("all", ALL_CUSTOMERS))
        },
        index=[label for label, _, _ in rows],
    )
    return (
        f"validation out of time, on the active customers "
        f"({population_rule(churn_window_days, definition)} of validation: "
        f"{counts['rows_churn_valid_active']:,} of "
        f"{counts['rows_churn_valid']:,} for churn, {counts['rows_spend_valid_active']:,} of "
        f"{counts['rows_spend_valid']:,} for spend) and on all customers:\n{table.to_string()}"
    )


def recommended_actions(
    bundle: ModelBundle, features: pd.DataFrame, as_of: pd.Timestamp
) -> pd.Series:
    """The policy's action for each feature row under a bundle (to compare two models)."""
    from serving.scoring.scorer import Scorer

    scores = Scorer(bundle, "compared").score(features, as_of, reasons="none")
    return scores["recommended_action"]


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
    allow_future_as_of: AllowFutureOption = False,
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
    cutoff = resolve_as_of(tables, as_of, allow_future=allow_future_as_of)
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
    allow_future_as_of: AllowFutureOption = False,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            min=0,
            metavar="N",
            help="Paired bootstrap resamples of the customers for the 95% intervals of model "
            "minus each baseline (0: no intervals).",
        ),
    ] = 1000,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Write the intervals (active and all customers) and verdicts: .json, .csv or "
            ".parquet.",
        ),
    ] = None,
    every_rung: Annotated[
        bool,
        typer.Option(
            "--every-rung/--best-rung-only",
            help="Also train and grade the rungs of the ladder below the one the history "
            "allows (shorter label windows, the BTYD base alone), side by side.",
        ),
    ] = True,
) -> None:
    """Train as of a past date as `train` does and compare model and baselines with reality.

    After the tables: per metric, model minus each baseline on the active customers with a
    paired bootstrap 95% interval, and whether the model beats every baseline.
    """
    from training.comparison import OUT_SUFFIXES
    from training.jobs import run_backtest

    if out is not None and out.suffix.lower() not in OUT_SUFFIXES:
        raise typer.BadParameter(f"must end in {', '.join(OUT_SUFFIXES)}", param_hint="--out")
    if out is not None and bootstrap == 0:
        raise typer.BadParameter("--out writes the intervals: give --bootstrap N >= 1")

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
    cutoff = resolve_as_of(tables, as_of, allow_future=allow_future_as_of)
    uri = Settings.from_env().tracking_uri
    quiet_optuna()
    result = timed(
        f"backtest as of {cutoff.date()}",
        lambda: run_backtest(
            tables, cutoff, options, tracking_uri=uri, data_dir=str(data), every_rung=every_rung
        ),
    )
    typer.echo(result.render())
    if bootstrap:
        context = {
            "as_of": str(cutoff.date()),
            "churn_window_days": options.churn_window_days,
            "horizon_days": options.horizon_days,
            "trials": options.trials,
        }
        echo_intervals(result, bootstrap, seed, out, context)


def echo_intervals(
    result: BacktestResult,
    resamples: int,
    seed: int,
    out: Path | None,
    context: dict[str, object],
) -> None:
    """Print the paired bootstrap intervals of the active customers; write both populations.

    The intervals over every customer (several times as many as the active ones, and not
    printed) are computed only for `out`.
    """
    from training.backtest import CHURN_ROWS, SPEND_ROWS
    from training.comparison import POPULATIONS, paired_bootstrap, render, write_comparison

    intervals = timed(
        f"paired bootstrap ({resamples:,} resamples)",
        lambda: paired_bootstrap(
            result.predictions,
            {"churn": CHURN_ROWS, "spend": SPEND_ROWS},
            resamples=resamples,
            seed=seed,
            populations=POPULATIONS if out is not None else ("active",),
        ),
    )
    typer.echo(f"\n{render(intervals, resamples)}")
    if out is None:
        typer.echo("\n(the intervals over all customers too: --out FILE)")
        return
    write_comparison(intervals, out, context | {"resamples": resamples, "seed": seed})
    typer.echo(f"\nintervals and verdicts written to {out}")


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
    allow_future_as_of: AllowFutureOption = False,
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
    end = resolve_as_of(tables, as_of, allow_future=allow_future_as_of)
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
