"""`vafa demo`: the main job end to end on generated data, as a newcomer first runs it."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vafa.cli.models import train_and_register, train_options
from vafa.cli.options import BusinessOption, TrialsOption
from vafa.cli.steps import load, timed
from vafa.settings import HOME_ENV, STORE_URL_ENV, TRACKING_URI_ENV, Settings

if TYPE_CHECKING:
    import pandas as pd

    from features.schema import Tables
    from serving.batch.job import BatchResult
    from training.jobs import TrainingRun


def demo(
    customers: Annotated[
        int, typer.Option("--customers", min=100, metavar="N", help="Customers to generate.")
    ] = 5000,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Folder for everything the demo writes, its registry and scores store too.",
        ),
    ] = Path("demo"),
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Random seed.")] = 42,
    trials: TrialsOption = 8,
    business: BusinessOption = "retail",
) -> None:
    """Run everything once on generated data, from the data to the dashboard.

    Generates a shop (or, with `--business subscription`, a software business selling
    subscriptions), validates it, builds features, trains and registers a model, scores
    every customer with it, plans a campaign and writes the dashboard, all under OUT. The
    demo keeps its own MLflow registry (OUT/mlflow/) and scores store (OUT/store/), whatever
    MLFLOW_TRACKING_URI and VAFA_STORE_URL say, and scores with the model it trained. A
    subscription demo scores a month earlier too, so the dashboard has churned MRR and net
    revenue retention to show.
    """
    import pandas as pd

    from features.build import build_features
    from features.io import write_frame, write_tables
    from features.schema import default_as_of
    from serving.report.build import write_report
    from vafa.cli.data import generator_for

    generator = generator_for(business)

    settings = Settings.for_home(out)
    typer.echo(
        f"The demo keeps its own registry and scores store under {out}/ "
        "(MLFLOW_TRACKING_URI and VAFA_STORE_URL are not used):\n"
        f"  registry      {settings.tracking_uri}\n  scores store  {settings.store_url}\n"
    )
    data_dir = out / "data"
    tables = timed(
        f"generating {customers} {business} customers", lambda: generator(customers, seed=seed)
    )
    write_tables(tables, data_dir, fmt="parquet")
    loaded = load(data_dir)
    typer.echo(loaded.report.render())
    cutoff = default_as_of(loaded.tables)
    frame = timed(
        f"building features as of {cutoff.date()}", lambda: build_features(loaded.tables, cutoff)
    )
    features_path = write_frame(frame, out / "features.parquet")
    typer.echo(
        f"\nfeatures: {len(frame):,} customers x {frame.shape[1] - 1} columns as of {cutoff.date()}"
        f" -> {features_path}"
    )
    preview = PREVIEW[business]
    typer.echo(frame[preview].head(5).round(1).to_string(index=False))
    typer.echo("")
    options = train_options(90, 365, None, 0.0, trials, None, seed)
    trained = train_and_register(
        data_dir, loaded.tables, cutoff, options, tracking_uri=settings.tracking_uri
    )
    version = trained.registered.version
    if business == "subscription":
        earlier = cutoff - pd.Timedelta(days=30)
        timed(
            f"scoring a month earlier, as of {earlier.date()}, for the dashboard's trends",
            lambda: score_with_version(
                loaded.tables, earlier, out / "scores", trained, settings, data_dir
            ),
        )
    scored = timed(
        f"scoring as of {cutoff.date()} with model version {version}",
        lambda: score_with_version(
            loaded.tables, cutoff, out / "scores", trained, settings, data_dir
        ),
    )
    batch_path, scores = scored.folder, scored.scores
    typer.echo(
        f"\nscores: {len(scores):,} customers -> {batch_path}\n"
        f"scored with model version {version}, the one this demo trained"
        f" ({'the champion' if trained.registered.promoted else 'kept as challenger'})"
    )
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
    plan_demo_campaign(out / "scores", cutoff, len(scores))
    dashboard, _ = timed(
        "writing the dashboard",
        lambda: write_report(out / "scores", out / "report.html", data_dir),
    )
    typer.echo(f"\ndemo data: {data_dir}")
    typer.echo(f"dashboard (open in a browser): {dashboard.resolve()}")
    typer.echo(f"MLflow: .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri}")
    echo_serve_hint(out, version, promoted=trained.registered.promoted)


PREVIEW = {
    "retail": ["customer_id", "recency_days", "n_orders", "spend_total", "overdue_ratio"],
    "subscription": ["customer_id", "holds_term", "mrr", "days_to_renewal", "login_30d"],
}


def score_with_version(
    tables: Tables,
    cutoff: pd.Timestamp,
    scores_dir: Path,
    trained: TrainingRun,
    settings: Settings,
    data_dir: Path,
) -> BatchResult:
    """The nightly batch with the bundle just trained, labelled with its registered version.

    Not `score_with_champion`: a demo model that does not beat an earlier champion of the
    demo's registry would leave the scores to that older model.
    """
    from serving.batch.job import BatchOptions, run_batch
    from serving.batch.monitoring import log_run
    from serving.scoring.scorer import Scorer
    from serving.store.database import ScoreStore

    scorer = Scorer(trained.result.bundle, trained.registered.version)
    store = ScoreStore(settings.store_url)
    try:
        result = run_batch(
            tables, cutoff, scorer, scores_dir, store, BatchOptions(), {"data_dir": str(data_dir)}
        )
    finally:
        store.dispose()
    log_run(result.summary, settings.tracking_uri, f"score-{cutoff.date()}")
    return result


def echo_serve_hint(out: Path, version: str, *, promoted: bool) -> None:
    """How to serve the demo's model and scores: its registry and store, not the defaults."""
    home = shlex.quote(str(out))
    if any(os.environ.get(name) for name in (TRACKING_URI_ENV, STORE_URL_ENV)):
        settings = Settings.for_home(out)
        prefix = (
            f"{TRACKING_URI_ENV}={shlex.quote(settings.tracking_uri)} "
            f"{STORE_URL_ENV}={shlex.quote(settings.store_url)}"
        )
    else:
        prefix = f"{HOME_ENV}={home}"
    if not promoted:
        typer.echo(
            f"make it the demo's champion: {prefix} .venv/bin/vafa promote --version {version}"
        )
    typer.echo(f"serve the demo's champion and scores: {prefix} .venv/bin/vafa serve")


def plan_demo_campaign(scores_dir: Path, as_of: pd.Timestamp, customers: int) -> None:
    """A campaign with a budget of 50 per 100 customers, kept where `vafa campaign` keeps it.

    A flag on the run is shown, not refused: the data is generated.
    """
    from serving.campaign.publish import plan_from_run, save_campaign
    from serving.runs import latest_run
    from serving.scoring.policy.schema import load_policy

    run = latest_run(scores_dir, as_of)
    if run is None:  # run_batch has just published it
        raise RuntimeError(f"no run as of {as_of.date()} under {scores_dir}")
    budget = 50.0 * max(customers // 100, 1)
    planned = plan_from_run(
        run,
        load_policy().actions,
        budget,
        1.0,
        allow_stale=True,
        allow_drift=True,
        terms={"policy": "packaged default"},
    )
    for kind, flagged in planned.flags.items():
        if flagged:
            typer.echo(f"warning: the run is flagged for {kind}: {', '.join(flagged)}", err=True)
    written, _ = save_campaign(planned, scores_dir)
    typer.echo(f"\ncampaign with a budget of {budget:,.0f}: {written}")
    typer.echo(planned.plan.summary())
