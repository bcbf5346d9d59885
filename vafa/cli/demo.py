"""`vafa demo`: the main job end to end on generated data, as a newcomer first runs it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vafa.cli.models import train_and_register, train_options
from vafa.cli.options import TrialsOption
from vafa.cli.scoring import run_scoring
from vafa.cli.steps import echo_mlflow_hint, load, timed

if TYPE_CHECKING:
    import pandas as pd


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
    from features.build import build_features
    from features.io import write_frame, write_tables
    from features.schema import default_as_of
    from features.synthetic import generate_tables
    from serving.report.build import write_report

    data_dir = out / "data"
    tables = timed(
        f"generating {customers} customers", lambda: generate_tables(customers, seed=seed)
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
    preview = ["customer_id", "recency_days", "n_orders", "spend_total", "overdue_ratio"]
    typer.echo(frame[preview].head(5).round(1).to_string(index=False))
    typer.echo("")
    train_and_register(
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
    from serving.scoring.policy.schema import load_policy

    budget = 50.0 * max(len(scores) // 100, 1)
    plan = plan_campaign(scores, load_policy().actions, budget, 1.0)
    plan_path, _ = write_plan(plan, run / "campaign.csv")
    typer.echo(f"\ncampaign with a budget of {budget:,.0f}: {plan_path}")
    typer.echo(plan.summary())
