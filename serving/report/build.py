"""The dashboard's figures for the runs in a scores folder, and the report file written from them.

Where each figure comes from:

* The scores of each `as_of=YYYY-MM-DD/` run (`scores.parquet`) and its `summary.json`: customer
  equity, value at risk, the expected churn rate, actions and segments are the batch's own
  figures (`serving.runs.summarise`); a run without a summary gets them from the same
  function, so there is one definition of each. Rates (churn, value at risk over equity) are
  over the decision population (`features.population`), the all-customer figure beside them.
* The latest run's stale-data and drift flags (`serving.runs.run_flags`) put a banner on top.
* Behaviour and survey figures (retention, repeat purchase, NPS, CSAT, support, product
  category, purchase channel, customer type) need the customers' history. They are read from
  the score columns when the batch wrote them there, else built from the data folder
  (`--data`) with the same feature code as the models, as of each run's date. Without either,
  the section says the data does not have them.
* Subscription runs (scores with `mrr`): total MRR and renewals due from the latest run;
  churned MRR against the previous published run; net revenue retention against the earliest
  run with MRR at most a year before the latest (`figures.subscription_figures`). Retail runs
  have none of these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.io import load_tables, write_text
from features.schema import Tables
from serving.report.context import customer_context, retention_rates, with_context
from serving.report.figures import (
    GROUPINGS,
    headline,
    run_figures,
    segment_value,
    subscriber_mrr,
    subscription_figures,
    vips_at_risk,
)
from serving.report.read import published_runs, read_changes, read_scores
from serving.report.render import render_html
from serving.runs import Run, read_summary, run_flags

TREND_DATA_RUNS = 24


@dataclass
class Dashboard:
    """Everything the page shows, computed; `render_html` only formats it."""

    run: Run
    frame: pd.DataFrame
    summary: dict[str, Any]
    headline: dict[str, float | None]
    groups: dict[str, pd.DataFrame]
    vips: pd.DataFrame
    trend: pd.DataFrame
    market_value: float | None = None
    data_note: str = ""
    changes: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)
    flags: dict[str, list[str]] = field(default_factory=dict)
    subscriptions: dict[str, Any] | None = None


def build_dashboard(
    scores_dir: Path,
    data_dir: Path | None = None,
    market_value: float | None = None,
    top: int = 15,
    load: Callable[[Path], Tables] | None = None,
) -> Dashboard:
    """Compute everything the dashboard shows from the runs under `scores_dir`.

    Args:
        scores_dir: the folder `vafa score --out` writes to (one `as_of=` folder per run).
        data_dir: the data folder the runs were scored from, for the behaviour and survey
            figures the scores do not carry; None: only what the scores have.
        market_value: the whole market's customer value, for the customer equity share.
        top: how many VIPs at risk to list.
        load: how to load the data folder (default `features.io.load_tables`).

    Raises:
        ReportError: no usable run under `scores_dir`.
    """
    runs = published_runs(scores_dir)
    latest = runs[-1]
    tables: Tables | None = None
    if data_dir is not None:
        tables = load_tables(data_dir).tables if load is None else load(data_dir)
    trend_rows = []
    frame = pd.DataFrame()
    summary: dict[str, Any] = {}
    rates: dict[str, float | None] = {}
    # Each run's data figures build features three times: only the latest runs get them, so
    # a year of nightly runs still renders in seconds.
    with_data = {run.as_of for run in runs[-TREND_DATA_RUNS:]} if tables is not None else set()
    mrr_by_run: list[tuple[pd.Timestamp, pd.Series | None]] = []
    for run in runs:
        scores = read_scores(run)
        run_summary = read_summary(run, scores)
        mrr = subscriber_mrr(scores)
        mrr_by_run.append((run.as_of, mrr))
        context: pd.DataFrame | None = None
        run_rates: dict[str, float | None] = {}
        if tables is not None and run.as_of in with_data:
            context = customer_context(tables, run.as_of)
            run_rates = retention_rates(tables, run.as_of)
        joined = with_context(scores, context)
        figures = headline(joined, run_summary)
        trend_rows.append(
            {
                "as_of": run.as_of,
                **run_figures(
                    run_summary,
                    {
                        "retention_quarterly": run_rates.get("retention_quarterly"),
                        "repeat_purchase_rate": figures["repeat_purchase_rate"],
                        "nps": figures["nps"],
                        "mrr": None if mrr is None else float(mrr.sum()),
                    },
                ),
            }
        )
        if run is latest:
            frame, summary, rates = joined, run_summary, run_rates
    figures = {**headline(frame, summary, market_value), **rates}
    subscriptions = subscription_figures(frame, mrr_by_run)
    groups = {by: segment_value(frame, by) for by in GROUPINGS if by in frame.columns}
    if data_dir is not None:
        note = f"behaviour and survey figures built from {data_dir} as of each run's date"
    else:
        note = (
            "no data folder given (--data): behaviour and survey figures only where the "
            "scores carry them"
        )
    return Dashboard(
        run=latest,
        frame=frame,
        summary=summary,
        headline=figures,
        groups=groups,
        vips=vips_at_risk(frame, top),
        trend=pd.DataFrame(trend_rows),
        market_value=market_value,
        data_note=note,
        changes=read_changes(latest),
        flags=run_flags(summary),
        subscriptions=subscriptions,
    )


def write_report(
    scores_dir: Path,
    out: Path,
    data_dir: Path | None = None,
    market_value: float | None = None,
    top: int = 15,
) -> tuple[Path, Dashboard]:
    """Build the dashboard and write it to `out` atomically (temporary file, then rename)."""
    dashboard = build_dashboard(scores_dir, data_dir, market_value, top)
    write_text(render_html(dashboard), out)
    return out, dashboard
