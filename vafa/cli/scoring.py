"""`vafa score`, `campaign` and `report`: the nightly batch and what is read from its runs."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vafa.cli.options import (
    EXIT_DRIFT,
    EXIT_FAILED,
    EXIT_STALE,
    AllowFutureOption,
    AsOfOption,
    DataOption,
    QuarantineOption,
)
from vafa.cli.steps import input_counts, load, resolve_as_of, resolve_date, timed
from vafa.settings import Settings

if TYPE_CHECKING:
    from serving.batch.job import BatchOptions, BatchResult
    from serving.runs import Run


class EngineName(StrEnum):
    """Where the features and scores are computed."""

    local = "local"
    spark = "spark"


@functools.cache
def _batch_defaults() -> dict[str, Any]:
    from serving.batch.job import BatchOptions

    defaults = BatchOptions()
    return {
        "chunk_customers": defaults.chunk_customers,
        "drift_threshold": defaults.drift_threshold,
        "stale_days": defaults.freshness.max_lag_days,
    }


class BatchDefaults(Mapping[str, Any]):
    """`vafa score`'s option defaults: the batch's own (`BatchOptions()`), read on first use.

    Click reads them through the command's `default_map` when `vafa score` runs or shows its
    help, so the scoring stack is imported then, not whenever `vafa` starts.
    """

    def __getitem__(self, key: str) -> Any:
        return _batch_defaults()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_batch_defaults())

    def __len__(self) -> int:
        return len(_batch_defaults())


SCORE_CONTEXT = {"default_map": BatchDefaults()}
"""The context settings `score` is registered with."""


def score(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Folder; scores go to OUT/as_of=YYYY-MM-DD/.")],
    as_of: AsOfOption = None,
    quarantine: QuarantineOption = None,
    engine: Annotated[
        EngineName, typer.Option("--engine", help="Compute features and scores here.")
    ] = EngineName.local,
    chunk_customers: Annotated[
        int | None,
        typer.Option("--chunk-customers", min=1, help="Customers scored at once (bounds memory)."),
    ] = None,
    drift_threshold: Annotated[
        float | None,
        typer.Option("--drift-threshold", min=0, help="PSI above which drift is flagged."),
    ] = None,
    stale_days: Annotated[
        float | None,
        typer.Option("--stale-days", min=0, help="Flag tables whose latest row is older."),
    ] = None,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help=f"Exit {EXIT_DRIFT} when drift is flagged.")
    ] = False,
    fail_on_stale: Annotated[
        bool, typer.Option("--fail-on-stale", help=f"Exit {EXIT_STALE} when data is stale.")
    ] = False,
    store: Annotated[
        bool, typer.Option("--store/--no-store", help="Publish the scores into the scores store.")
    ] = True,
    take_over_store: Annotated[
        bool,
        typer.Option(
            "--take-over-store",
            help="Publish into a scores store that serves another output folder's runs.",
        ),
    ] = False,
    allow_future_as_of: AllowFutureOption = False,
) -> None:
    """Score every customer as of a date with the champion (the nightly batch).

    Writes OUT/as_of=DATE/ (scores, changed actions, summary) and the scores store
    (VAFA_STORE_URL) aside, swaps the folder in and switches the store to it last, and logs the
    run to MLflow (experiment vafa-scoring). The store refuses a run of another output folder
    than the one it serves, unless --take-over-store.
    Exit codes: 0 ok, 1 failure (previous results intact), 2 usage, 3 bad data, 4 drift with
    --fail-on-drift, 5 stale data with --fail-on-stale (4 and 5 still publish the scores).
    """
    options = batch_options(
        engine.value, chunk_customers, drift_threshold, stale_days, take_over_store
    )
    result = run_scoring(
        data,
        out,
        as_of,
        quarantine,
        options=options,
        use_store=store,
        allow_future=allow_future_as_of,
    )
    summary = result.summary
    changes = summary["changes"]
    typer.echo(f"scored {len(result.scores):,} customers -> {result.folder}")
    if "store" in summary:
        published = summary["store"]
        typer.echo(
            f"scores store {published['url']}: serves run {published['run_id']} "
            f"({published['rows']:,} rows; it served {published['replaces']})"
        )
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
        typer.echo(f"warning: drift past PSI {options.drift_threshold:g} in {flagged}", err=True)
    if fail_on_drift and result.drift_flagged:
        raise typer.Exit(EXIT_DRIFT)
    if fail_on_stale and result.stale:
        raise typer.Exit(EXIT_STALE)


def batch_options(
    engine: str,
    chunk_customers: int | None = None,
    drift_threshold: float | None = None,
    stale_days: float | None = None,
    take_over_store: bool = False,
) -> BatchOptions:
    """The batch's options from `score`'s; the batch's defaults for those not given (None)."""
    from serving.batch.job import BatchOptions
    from serving.batch.monitoring import FreshnessRules

    defaults = BatchOptions()
    return BatchOptions(
        chunk_customers=defaults.chunk_customers if chunk_customers is None else chunk_customers,
        drift_threshold=defaults.drift_threshold if drift_threshold is None else drift_threshold,
        freshness=(
            defaults.freshness if stale_days is None else FreshnessRules(max_lag_days=stale_days)
        ),
        engine=engine,
        take_over_store=take_over_store,
    )


def run_scoring(
    data: Path,
    out: Path,
    as_of: str | None,
    quarantine: Path | None = None,
    *,
    options: BatchOptions | None = None,
    use_store: bool = True,
    allow_future: bool = False,
) -> BatchResult:
    """Load, score with the champion, write the run's folder and the store, log to MLflow.

    The summary's `extra` records the data folder and the input and quarantined rows per table.
    """
    from serving.batch.job import BatchOptions, engine_for, score_with_champion

    options = options or BatchOptions()
    try:
        engine_for(options.engine)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--engine") from exc
    loaded = load(data, quarantine)
    tables = loaded.tables
    cutoff = resolve_as_of(tables, as_of, allow_future=allow_future)
    settings = Settings.from_env()
    return timed(
        f"scoring as of {cutoff.date()}",
        lambda: score_with_champion(
            tables,
            cutoff,
            out,
            tracking_uri=settings.tracking_uri,
            store_url=settings.store_url if use_store else None,
            options=options,
            extra={"data_dir": str(data)} | input_counts(loaded.report),
        ),
    )


def latest_scores(scores_dir: Path, as_of: str | None = None) -> Run:
    """The run of a date, else the latest published run under `scores_dir`."""
    from serving.runs import latest_run

    if as_of is not None:
        found = latest_run(scores_dir, resolve_date(as_of))
        if found is None:
            raise typer.BadParameter(f"no scores for {as_of} in {scores_dir}", param_hint="--as-of")
        return found
    found = latest_run(scores_dir)
    if found is None:
        raise typer.BadParameter(
            f"no scores under {scores_dir}: run `vafa score`", param_hint="--scores"
        )
    return found


def campaign(
    scores: Annotated[
        Path, typer.Option("--scores", help="Scores folder written by `vafa score`.")
    ],
    budget: Annotated[float, typer.Option("--budget", min=0, help="Total contact budget.")],
    cost_per_contact: Annotated[
        float, typer.Option("--cost-per-contact", min=0, help="Cost of actions without their own.")
    ] = 1.0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Contact list, .csv or .parquet (never replaced); default: "
            "SCORES/campaigns/as_of=DATE/<campaign id>.csv.",
        ),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Which run; default: the latest.")
    ] = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="Retention policy YAML.")] = None,
    allow_stale: Annotated[
        bool, typer.Option("--allow-stale", help="Use a run flagged for stale data anyway.")
    ] = False,
    allow_drift: Annotated[
        bool, typer.Option("--allow-drift", help="Use a run flagged for drift anyway.")
    ] = False,
) -> None:
    """Pick whom to contact under a budget for the most expected retained value minus cost.

    Each campaign is kept under its own id beside the runs, never over another, and a run
    flagged stale or drifted by `vafa score` is refused unless --allow-stale / --allow-drift
    (exit 5 for stale data, 4 for drift, as `vafa score --fail-on-...`).
    """
    from serving.campaign.publish import RunFlagged, plan_from_run, save_campaign
    from serving.scoring.policy.schema import load_policy

    run = latest_scores(scores, as_of)
    try:
        planned = plan_from_run(
            run,
            load_policy(policy).actions,
            budget,
            cost_per_contact,
            allow_stale=allow_stale,
            allow_drift=allow_drift,
            terms={"policy": str(policy) if policy else "packaged default"},
        )
    except RunFlagged as exc:
        options = " ".join(f"--allow-{kind}" for kind in exc.kinds)
        typer.echo(f"error: {exc}; check the run, or pass {options} to use it anyway", err=True)
        raise typer.Exit(EXIT_STALE if "stale" in exc.kinds else EXIT_DRIFT) from exc
    for kind, flagged in planned.flags.items():
        if flagged:
            typer.echo(f"warning: the run is flagged for {kind}: {', '.join(flagged)}", err=True)
    try:
        written, summary = save_campaign(planned, scores, out)
    except FileExistsError as exc:
        raise typer.BadParameter(str(exc), param_hint="--out") from exc
    typer.echo(planned.plan.summary())
    typer.echo(f"campaign {planned.campaign_id}: contact list {written} (summary {summary})")


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
    from serving.report.build import write_report
    from serving.report.read import ReportError

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
    for kind, flagged in dashboard.flags.items():
        if flagged:
            named = ", ".join(flagged)
            typer.echo(f"warning: the latest run is flagged for {kind}: {named}", err=True)
