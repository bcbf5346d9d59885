"""The `vafa` command line: thin commands that parse options and call the packages."""

from __future__ import annotations

import logging
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from typer._click.exceptions import ClickException

from vafa.settings import Settings, quiet_telemetry

quiet_telemetry()

# Imported after the telemetry switch on purpose: the packages pull in MLflow and BentoML.
import pandas as pd  # noqa: E402

from features.build import build_features  # noqa: E402
from features.io import (  # noqa: E402  # noqa: E402
    DataValidationError,
    LoadResult,
    load_tables,
    validate_folder,
    write_frame,
    write_tables,
)
from features.schema import Tables, to_timestamp  # noqa: E402
from features.synthetic import generate_tables  # noqa: E402
from serving.batch.job import DEFAULT_CHUNK_CUSTOMERS  # noqa: E402
from serving.batch.monitoring import DRIFT_THRESHOLD, FreshnessRules  # noqa: E402
from training.train import TrainOptions  # noqa: E402

if TYPE_CHECKING:
    from serving.batch.job import BatchOptions, BatchResult

log = logging.getLogger("vafa")

# Exit codes a scheduler can act on.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # Click's own code for bad options
EXIT_BAD_DATA = 3
EXIT_DRIFT = 4  # `score --fail-on-drift`: scored and published, but the population drifted
EXIT_STALE = 5  # `score --fail-on-stale`: scored and published, but the data looks stale

app = typer.Typer(
    name="vafa",
    help="Predict which customers are about to leave, what each is worth, and what to do.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")

DataOption = Annotated[
    Path,
    typer.Option(
        "--data",
        help="Data folder with transactions and optional customers/events.",
        exists=True,
        file_okay=False,
        dir_okay=True,
        readable=True,
    ),
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="Cutoff date (ISO 8601); default: the day after the last transaction."
    ),
]
TrialsOption = Annotated[int, typer.Option("--trials", min=1, help="Optuna trials per model.")]
TimeoutOption = Annotated[
    float | None, typer.Option("--timeout", min=1, help="Seconds of tuning per model, at most.")
]
ChurnWindowOption = Annotated[
    int, typer.Option("--churn-window-days", min=1, help="Churn = no purchase in this many days.")
]
HorizonOption = Annotated[
    int, typer.Option("--horizon-days", min=1, help="Horizon of predicted spend and CLV.")
]
MarginOption = Annotated[
    float | None,
    typer.Option(
        "--margin-rate", min=0, max=1, help="Margin per unit of revenue without a margin column."
    ),
]
DiscountOption = Annotated[
    float, typer.Option("--discount-rate", min=0, help="Annual discount rate applied to CLV.")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed.")]
BtydOption = Annotated[
    bool,
    typer.Option(
        "--btyd-features/--no-btyd-features",
        help="Give the models BG/NBD's probability alive and expected purchases.",
    ),
]
QuarantineOption = Annotated[
    Path | None,
    typer.Option(
        "--quarantine", help="Set bad rows aside into this folder and go on with the rest."
    ),
]


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
) -> None:
    """Vafa: churn and customer-value scoring with retention actions."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Per-trial lines from Optuna drown the progress; --verbose brings them back.
    logging.getLogger("optuna").setLevel(logging.DEBUG if verbose else logging.WARNING)


def run() -> None:
    """Entry point: turns expected failures into clear messages and exit codes."""
    try:
        # Without standalone mode Click returns a `typer.Exit`'s code instead of raising it.
        code = app(standalone_mode=False)
    except DataValidationError as exc:
        typer.echo(str(exc), err=True)
        sys.exit(EXIT_BAD_DATA)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(EXIT_FAILED)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except ClickException as exc:  # bad options: Click's own message and exit code 2
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:  # the last line of defence: a message, not a traceback
        log.debug("failure", exc_info=True)
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if isinstance(code, int) and code:
        sys.exit(code)


@contextmanager
def step(name: str) -> Iterator[None]:
    """Log the start and duration of a long step."""
    log.info("%s ...", name)
    started = time.perf_counter()
    yield
    log.info("%s done in %.1f s", name, time.perf_counter() - started)


def timed(name: str, fn: Callable[[], T]) -> T:
    """Run `fn` as a logged step."""
    with step(name):
        return fn()


def load(data: Path, quarantine: Path | None = None) -> LoadResult:
    """Load and validate a data folder, logging warnings and the quarantine count."""
    result = timed(f"loading {data}", lambda: load_tables(data, quarantine_dir=quarantine))
    for problem in result.report.warnings:
        log.warning("%s", problem.render())
    return result


def resolve_as_of(tables: Tables, as_of: str | None) -> pd.Timestamp:
    """The given date, else the day after the last transaction (so every row is before it)."""
    if as_of is not None:
        try:
            return to_timestamp(as_of)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--as-of") from exc
    last = tables.transactions["ts"].max()
    return to_timestamp(last.normalize() + pd.Timedelta(days=1))


@app.command()
def generate(
    customers: Annotated[
        int, typer.Option("--customers", min=1, help="Number of customers.")
    ] = 5000,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the tables to.")] = Path(
        "demo/data"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    end: Annotated[
        str, typer.Option("--end", help="All rows are before this date.")
    ] = "2026-11-01",
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
) -> None:
    """Write a realistic synthetic data folder (transactions, customers, events)."""
    if fmt not in ("parquet", "csv"):
        raise typer.BadParameter("must be parquet or csv", param_hint="--format")
    tables = timed(
        f"generating {customers} customers", lambda: generate_tables(customers, seed=seed, end=end)
    )
    write_tables(tables, out, fmt=fmt)  # type: ignore[arg-type]
    counts = ", ".join(f"{name} {len(frame):,}" for name, frame in _frames(tables))
    typer.echo(f"wrote {out} ({counts} rows)")


@app.command()
def validate(data: DataOption) -> None:
    """Check a data folder against the contract; exit 3 if it breaks it."""
    report = timed(f"validating {data}", lambda: validate_folder(data))
    typer.echo(report.render())
    if not report.ok:
        raise typer.Exit(EXIT_BAD_DATA)


@app.command()
def features(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Output file, .parquet or .csv.")],
    as_of: AsOfOption = None,
    quarantine: QuarantineOption = None,
) -> None:
    """Write one feature row per customer as of a date (only rows before it are read)."""
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise typer.BadParameter("must end in .parquet or .csv", param_hint="--out")
    tables = load(data, quarantine).tables
    cutoff = resolve_as_of(tables, as_of)
    frame = timed(
        f"building features as of {cutoff.date()}", lambda: build_features(tables, cutoff)
    )
    write_frame(frame, out)
    typer.echo(
        f"wrote {out}: {len(frame):,} customers x {frame.shape[1] - 1} features"
        f" as of {cutoff.date()}"
    )


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


def echo_mlflow_hint() -> None:
    """How to look at the runs."""
    uri = Settings.from_env().tracking_uri
    typer.echo(f"MLflow: .venv/bin/mlflow ui --backend-store-uri {uri}")


def tracking() -> str:
    """Configure MLflow from the settings; returns the tracking URI."""
    from training.registry import configure_tracking

    uri = Settings.from_env().tracking_uri
    configure_tracking(uri)
    return uri


def run_training(data: Path, tables: Tables, cutoff: pd.Timestamp, options: TrainOptions) -> str:
    """Train, log and register; prints the decision and the key figures. Returns the version."""
    from training.datasets import data_fingerprint
    from training.plots import write_plots
    from training.registry import log_training_run, optuna_storage
    from training.train import train_models

    uri = tracking()
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S")
    result = timed(
        f"training as of {cutoff.date()} ({options.trials} trials per model)",
        lambda: train_models(tables, cutoff, options, optuna_storage(uri), f"train-{stamp}"),
    )
    with tempfile.TemporaryDirectory() as tmp:
        plots = write_plots(result, Path(tmp))
        registered = log_training_run(
            result,
            options,
            fingerprint=data_fingerprint(tables),
            data_dir=str(data),
            plots=plots,
            run_name=f"train-{cutoff.date()}",
        )
    m = result.metrics
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


@app.command()
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
    run_training(data, tables.before(cutoff), cutoff, options)
    echo_mlflow_hint()


@app.command()
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
    import mlflow
    from training.backtest import backtest as run_backtest
    from training.registry import optuna_storage

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
    uri = tracking()
    result = timed(
        f"backtest as of {cutoff.date()}",
        lambda: run_backtest(tables, cutoff, options, optuna_storage(uri)),
    )
    with mlflow.start_run(run_name=f"backtest-{cutoff.date()}"):
        mlflow.log_params(
            {
                "kind": "backtest",
                "as_of": str(cutoff.date()),
                "data_dir": str(data),
                **{f"option_{k}": v for k, v in asdict(options).items()},
            }
        )
        mlflow.log_metrics({k: v for k, v in result.flat_metrics().items() if math.isfinite(v)})
        mlflow.log_text(result.render(), "backtest.txt")
    typer.echo(result.render())


@app.command()
def promote(
    version: Annotated[
        str | None, typer.Option("--version", help="Model version; default: the challenger.")
    ] = None,
) -> None:
    """Make a registered model version the champion by hand."""
    from training.registry import promote as set_champion

    tracking()
    typer.echo(f"champion is now version {set_champion(version)}")


class EngineName(StrEnum):
    """Where the features and scores are computed."""

    local = "local"
    spark = "spark"


@app.command()
def score(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Folder; scores go to OUT/as_of=YYYY-MM-DD/.")],
    as_of: AsOfOption = None,
    quarantine: QuarantineOption = None,
    engine: Annotated[
        EngineName, typer.Option("--engine", help="Compute features and scores here.")
    ] = EngineName.local,
    chunk_customers: Annotated[
        int,
        typer.Option("--chunk-customers", min=1, help="Customers scored at once (bounds memory)."),
    ] = DEFAULT_CHUNK_CUSTOMERS,
    drift_threshold: Annotated[
        float, typer.Option("--drift-threshold", min=0, help="PSI above which drift is flagged.")
    ] = DRIFT_THRESHOLD,
    stale_days: Annotated[
        float,
        typer.Option("--stale-days", min=0, help="Flag tables whose latest row is older."),
    ] = FreshnessRules.max_lag_days,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help=f"Exit {EXIT_DRIFT} when drift is flagged.")
    ] = False,
    fail_on_stale: Annotated[
        bool, typer.Option("--fail-on-stale", help=f"Exit {EXIT_STALE} when data is stale.")
    ] = False,
    store: Annotated[
        bool, typer.Option("--store/--no-store", help="Upsert the scores into the scores store.")
    ] = True,
) -> None:
    """Score every customer as of a date with the champion (the nightly batch).

    Writes OUT/as_of=DATE/ (scores, changed actions, summary) aside and swaps it in, upserts
    the scores store (VAFA_STORE_URL) and logs the run to MLflow (experiment vafa-scoring).
    Exit codes: 0 ok, 1 failure (previous results intact), 2 usage, 3 bad data, 4 drift with
    --fail-on-drift, 5 stale data with --fail-on-stale (4 and 5 still publish the scores).
    """
    from serving.batch.job import BatchOptions

    options = BatchOptions(
        chunk_customers=chunk_customers,
        drift_threshold=drift_threshold,
        freshness=FreshnessRules(max_lag_days=stale_days),
        engine=engine.value,
    )
    result = run_scoring(data, out, as_of, quarantine, options=options, use_store=store)
    summary = result.summary
    changes = summary["changes"]
    typer.echo(f"scored {len(result.scores):,} customers -> {result.folder}")
    if changes["previous_as_of"] is not None:
        typer.echo(
            f"since {changes['previous_as_of']}: {changes['changed_actions']:,} changed actions, "
            f"{changes['new_customers']:,} new and {changes['dropped_customers']:,} dropped "
            "customers"
        )
    for flag in summary["freshness"]["flags"]:
        typer.echo(f"warning: stale data: {flag}", err=True)
    if result.drift_flagged:
        flagged = ", ".join(summary["drift"]["flagged"])
        typer.echo(f"warning: drift past PSI {drift_threshold:g} in {flagged}", err=True)
    if fail_on_drift and result.drift_flagged:
        raise typer.Exit(EXIT_DRIFT)
    if fail_on_stale and result.stale:
        raise typer.Exit(EXIT_STALE)


def run_scoring(
    data: Path,
    out: Path,
    as_of: str | None,
    quarantine: Path | None = None,
    *,
    options: BatchOptions | None = None,
    use_store: bool = True,
) -> BatchResult:
    """Load, score with the champion, write the run's folder and the store, log to MLflow."""
    from serving.batch.job import BatchOptions, engine_for, run_batch
    from serving.batch.monitoring import log_run
    from serving.scoring.scorer import Scorer
    from serving.store import ScoreStore

    options = options or BatchOptions()
    try:
        engine_for(options.engine)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--engine") from exc
    tables = load(data, quarantine).tables
    cutoff = resolve_as_of(tables, as_of)
    uri = tracking()
    scorer = Scorer.from_registry()
    store = ScoreStore(Settings.from_env().store_url) if use_store else None
    try:
        result = timed(
            f"scoring as of {cutoff.date()}",
            lambda: run_batch(
                tables, cutoff, scorer, out, store, options, extra={"data_dir": str(data)}
            ),
        )
    finally:
        if store is not None:
            store.dispose()
    try:
        run_id = log_run(result.summary, uri, f"score-{cutoff.date()}")
        log.info("scoring run logged to MLflow (run %s)", run_id)
    except Exception as exc:  # the scores are published; a monitoring outage must not undo that
        log.warning("could not log the scoring run to MLflow: %s", exc)
    return result


def latest_scores(scores_dir: Path, as_of: str | None = None) -> Path:
    """The run folder for a date, else the latest `as_of=` folder under `scores_dir`."""
    if as_of is not None:
        folder = scores_dir / f"as_of={resolve_date(as_of).date()}"
        if not folder.is_dir():
            raise typer.BadParameter(f"no scores for {as_of} in {scores_dir}", param_hint="--as-of")
        return folder
    runs = sorted(p for p in scores_dir.glob("as_of=*") if (p / "scores.parquet").exists())
    if not runs:
        raise typer.BadParameter(
            f"no scores under {scores_dir}: run `vafa score`", param_hint="--scores"
        )
    return runs[-1]


def resolve_date(value: str) -> pd.Timestamp:
    """A date option, with a clear error."""
    try:
        return to_timestamp(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command()
def campaign(
    scores: Annotated[
        Path, typer.Option("--scores", help="Scores folder written by `vafa score`.")
    ],
    budget: Annotated[float, typer.Option("--budget", min=0, help="Total contact budget.")],
    cost_per_contact: Annotated[
        float, typer.Option("--cost-per-contact", min=0, help="Cost of actions without their own.")
    ] = 1.0,
    out: Annotated[
        Path | None, typer.Option("--out", help="Contact list, .csv or .parquet.")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Which run; default: the latest.")
    ] = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="Retention policy YAML.")] = None,
) -> None:
    """Pick whom to contact under a budget for the most expected retained value minus cost."""
    from serving.campaign import plan_campaign, write_plan
    from serving.scoring.policy import load_policy

    run = latest_scores(scores, as_of)
    table = pd.read_parquet(run / "scores.parquet")
    actions = load_policy(policy).actions
    plan = plan_campaign(table, actions, budget, cost_per_contact)
    target = out or run / "campaign.csv"
    written, summary = write_plan(plan, target)
    typer.echo(plan.summary())
    typer.echo(f"contact list: {written} (summary {summary})")


@app.command()
def report(
    scores: Annotated[
        Path,
        typer.Option(
            "--scores", help="Scores folder written by `vafa score` (every as_of= run in it)."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="The dashboard, .html; default: SCORES/report.html."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="The data folder scored, for retention, repeat purchase, NPS, CSAT, support, "
            "category and channel figures the scores do not carry.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    market_value: Annotated[
        float | None,
        typer.Option(
            "--market-value", min=0, help="The whole market's customer value, for equity share."
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="VIPs at risk to list.")] = 15,
) -> None:
    """Write the management dashboard: one HTML file that opens offline."""
    from serving.report import ReportError, write_report

    target = out or scores / "report.html"
    if target.suffix.lower() not in (".html", ".htm"):
        raise typer.BadParameter("must end in .html", param_hint="--out")
    try:
        written, dashboard = timed(
            "writing the dashboard", lambda: write_report(scores, target, data, market_value, top)
        )
    except ReportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from exc
    typer.echo(f"dashboard of {len(dashboard.trend)} run(s), latest {dashboard.run.as_of.date()}:")
    typer.echo(f"  {written.resolve()}")


@app.command()
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


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 3000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Server processes; each loads the model.")
    ] = 1,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow a non-loopback address without a token.")
    ] = False,
) -> None:
    """The online scoring service: /score, /lookup, health, metrics and OpenAPI docs.

    Serves the registry's champion and follows it (VAFA_MODEL_POLL_SECONDS). With
    VAFA_API_TOKEN or VAFA_API_TOKEN_FILE set, every call but health and metrics needs
    `Authorization: Bearer <token>`.
    """
    import json
    import os

    from serving.online import ConfigError, ServiceConfig, check_bind
    from vafa.settings import REPO_ROOT

    try:
        check_bind(host, ServiceConfig.from_env().token, insecure)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    service: dict[str, object] = {"workers": workers}
    if "BENTOML_CONFIG" not in os.environ:
        # BentoML starts a span per request even with nowhere to send it (sample rate 0 by
        # default): a tenth of /score's HTTP CPU. A BentoML config of your own
        # (BENTOML_CONFIG) keeps its tracing settings.
        service["tracing"] = {"excluded_urls": "/score,/lookup"}
    overrides = {"services": {"vafa": service}}
    env = {**os.environ, "BENTOML_CONFIG_OVERRIDES": json.dumps(overrides)}
    if insecure:
        env["VAFA_ALLOW_INSECURE"] = "1"
    args = ["serving.online.service:VafaService", "--host", host, "--port", str(port)]
    command = [sys.executable, "-m", "bentoml", "serve", *args, "--working-dir", str(REPO_ROOT)]
    # The server replaces this process: signals and the exit code are the server's own.
    os.execve(sys.executable, command, env)


@app.command()
def demo(
    customers: Annotated[
        int, typer.Option("--customers", min=100, help="Customers to generate.")
    ] = 5000,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for everything the demo writes.")
    ] = Path("demo"),
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    trials: TrialsOption = 8,
) -> None:
    """The main job end to end on generated data: generate, validate, features, train, ..."""
    data_dir = out / "data"
    tables = timed(
        f"generating {customers} customers", lambda: generate_tables(customers, seed=seed)
    )
    write_tables(tables, data_dir, fmt="parquet")
    loaded = load(data_dir)
    typer.echo(loaded.report.render())
    cutoff = resolve_as_of(loaded.tables, None)
    frame = timed(
        f"building features as of {cutoff.date()}", lambda: build_features(loaded.tables, cutoff)
    )
    features_path = write_frame(frame, out / "features.parquet")
    typer.echo(
        f"\nfeatures: {len(frame):,} customers x {frame.shape[1] - 1} columns as of {cutoff.date()}"
        f" -> {features_path}"
    )
    preview = ["customer_id", "recency_days", "n_orders", "spend_total", "overdue_ratio"]
    typer.echo(frame[preview].head(5).round(1).to_string(index=False))
    typer.echo("")
    run_training(
        data_dir, loaded.tables, cutoff, train_options(90, 365, None, 0.0, trials, None, seed)
    )
    scored = run_scoring(data_dir, out / "scores", None)
    batch_path, scores = scored.folder, scored.scores
    typer.echo(f"\nscores: {len(scores):,} customers -> {batch_path}")
    top = scores.sort_values("value_at_risk", ascending=False).head(8)
    columns = [
        "customer_id",
        "churn_probability",
        "clv",
        "value_at_risk",
        "segment",
        "recommended_action",
        "reasons",
    ]
    typer.echo("the riskiest valuable customers, why, and what to do:")
    typer.echo(top[columns].round(2).to_string(index=False, max_colwidth=80))
    plan_demo_campaign(scores, batch_path)
    from serving.report import write_report

    dashboard, _ = timed(
        "writing the dashboard",
        lambda: write_report(out / "scores", out / "report.html", data_dir),
    )
    typer.echo(f"\ndemo data: {data_dir}")
    typer.echo(f"dashboard (open in a browser): {dashboard.resolve()}")
    echo_mlflow_hint()


def plan_demo_campaign(scores: pd.DataFrame, run: Path) -> None:
    """A campaign with a budget of 50 per 100 customers, written beside the scores."""
    from serving.campaign import plan_campaign, write_plan
    from serving.scoring.policy import load_policy

    budget = 50.0 * max(len(scores) // 100, 1)
    plan = plan_campaign(scores, load_policy().actions, budget, 1.0)
    plan_path, _ = write_plan(plan, run / "campaign.csv")
    typer.echo(f"\ncampaign with a budget of {budget:,.0f}: {plan_path}")
    typer.echo(plan.summary())


def _frames(tables: Tables) -> Iterator[tuple[str, pd.DataFrame]]:
    for name in ("transactions", "customers", "events"):
        frame = getattr(tables, name)
        if frame is not None:
            yield name, frame
