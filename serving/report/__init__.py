"""The management dashboard: one self-contained HTML file from the scoring runs in a folder.

Where each figure comes from:

* The scores of each `as_of=YYYY-MM-DD/` run (`scores.parquet`) and its `summary.json`: customer
  equity, value at risk, the expected churn rate, actions and segments are the batch's own
  figures (`serving.runs.summarise`); a run without a summary gets them from the same
  function, so there is one definition of each.
* Behaviour and survey figures (retention, repeat purchase, NPS, CSAT, support, product
  category, purchase channel, customer type) need the customers' history. They are read from
  the score columns when the batch wrote them there, else built from the data folder
  (`--data`) with the same feature code as the models, as of each run's date. Without either,
  the section says the data does not have them.

The page has no script and loads nothing: charts are inline SVG drawn by matplotlib, and a
Content-Security-Policy forbids any fetch, so it opens the same offline as online.
"""

from __future__ import annotations

import html
import importlib.resources
import io
import logging
import math
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.build import build_features
from features.io import write_text
from features.schema import Tables
from serving.runs import Run, changes_path, find_runs, read_summary

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = (
    "customer_id",
    "churn_probability",
    "clv",
    "value_at_risk",
    "segment",
    "recommended_action",
    "model_version",
)
# Columns of the feature table the dashboard reads (when scores do not already carry them).
CONTEXT_COLUMNS = (
    "n_orders",
    "orders_30d",
    "orders_90d",
    "dominant_channel",
    "segment",
    "nps_last",
    "days_since_nps",
    "csat_last",
    "days_since_csat",
    "support_ticket_90d",
    "unresolved_tickets",
    "complaint_90d",
)
RETENTION_PERIODS = {"monthly": 30, "quarterly": 90}
SURVEY_WINDOW_DAYS = 365
FOLLOW_UP_DAYS = 30
CSAT_SATISFIED = 4.0  # on the contract's 1-5 scale: 4 and 5 are satisfied
TREND_TABLE_RUNS = 12
TREND_DATA_RUNS = 24
CLV_FLOOR = 1.0  # customers below it share the histogram's first bar
VIP_VALUE_QUANTILE = 0.8  # only without the scorer's value tier: the top 20% by CLV
GROUPINGS = {
    "segment": "Segment (value x risk)",
    "customer_type": "Customer type",
    "main_category": "Product category (most spend)",
    "dominant_channel": "Purchase channel (most orders)",
}
UNKNOWN = "unknown"


class ReportError(ValueError):
    """A scores folder (or run in it) the dashboard cannot be made from; the message says why."""


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


# --- reading runs -------------------------------------------------------------------------------


def published_runs(scores_dir: Path) -> list[Run]:
    """Every published run under `scores_dir`, oldest first.

    Raises:
        ReportError: the folder does not exist, or holds no run.
    """
    if not scores_dir.is_dir():
        raise ReportError(f"{scores_dir} is not a folder of scores (written by `vafa score`)")
    runs = find_runs(scores_dir)
    if not runs:
        raise ReportError(
            f"no runs under {scores_dir}: expected as_of=YYYY-MM-DD/scores.parquet "
            "folders, as `vafa score --out` writes them"
        )
    return runs


def read_scores(run: Run) -> pd.DataFrame:
    """The scores of a run, checked for the columns the dashboard needs.

    Raises:
        ReportError: the file cannot be read or lacks a required column.
    """
    path = run.scores_path
    try:
        scores = pd.read_parquet(path)
    except Exception as exc:
        raise ReportError(f"cannot read {path}: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in scores.columns]
    if missing:
        raise ReportError(f"{path} lacks the score columns {missing}")
    if scores.empty:
        raise ReportError(f"{path} has no rows")
    return scores


def read_changes(run: Run) -> pd.DataFrame | None:
    """The customers whose action changed since the previous run, when the batch listed them."""
    path = changes_path(run)
    if path is None:
        return None
    try:
        return pd.read_parquet(path)
    except Exception:
        log.warning("%s is unreadable; the changes section is left out", path)
        return None


# --- customer context from the data folder -------------------------------------------------------


def main_category(transactions: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Each customer's product category with the most purchase value before `as_of`.

    Purchases are rows with `amount >= 0`, as in the features. Ties go to the first name.

    Returns:
        A string series indexed by customer_id; customers without a categorised purchase
        are absent.
    """
    if "category" not in transactions.columns:
        return pd.Series(dtype="str", name="main_category")
    rows = transactions[
        (transactions["ts"] < as_of)
        & (transactions["amount"] >= 0)
        & transactions["category"].notna()
    ]
    spend = rows.groupby(["customer_id", "category"], observed=True)["amount"].sum().reset_index()
    spend = spend.sort_values(["customer_id", "amount", "category"], ascending=[True, False, True])
    best = spend.drop_duplicates("customer_id").set_index("customer_id")["category"]
    return best.astype("str").rename("main_category")


def customer_context(tables: Tables, as_of: pd.Timestamp) -> pd.DataFrame:
    """The feature columns the dashboard reads, per customer, as of a run's date."""
    features = build_features(tables, as_of)
    kept = [c for c in CONTEXT_COLUMNS if c in features.columns]
    context = features[["customer_id", *kept]].rename(columns={"segment": "customer_type"})
    category = main_category(tables.transactions, as_of)
    if not category.empty:
        context = context.join(category, on="customer_id")
    return context


def orders_in_window(tables: Tables, as_of: pd.Timestamp, days: int) -> pd.Series:
    """Orders each customer placed in the `days` before `as_of` (the features' `orders_Nd`)."""
    features = build_features(Tables(tables.transactions), as_of)
    return features.set_index("customer_id")[f"orders_{days}d"]


def retention_rate(previous: pd.Series, current: pd.Series) -> float | None:
    """Share of the customers who bought in the previous period that bought again in this one.

    Args:
        previous: orders per customer in the period before (indexed by customer_id).
        current: orders per customer in this period.

    Returns:
        The rate, or None when nobody bought in the previous period.
    """
    active = previous.index[previous > 0]
    if len(active) == 0:
        return None
    kept = current.reindex(active).fillna(0) > 0
    return float(kept.mean())


def retention_rates(tables: Tables, as_of: pd.Timestamp) -> dict[str, float | None]:
    """Monthly and quarterly retention (and its complement, observed churn) up to `as_of`."""
    rates: dict[str, float | None] = {}
    for name, days in RETENTION_PERIODS.items():
        current = orders_in_window(tables, as_of, days)
        previous = orders_in_window(tables, as_of - pd.Timedelta(days=days), days)
        rate = retention_rate(previous, current)
        rates[f"retention_{name}"] = rate
        rates[f"churn_{name}"] = None if rate is None else 1.0 - rate
    return rates


def with_context(scores: pd.DataFrame, context: pd.DataFrame | None) -> pd.DataFrame:
    """The scores with the context columns they do not already carry (scores win)."""
    if context is None:
        return scores
    added = [c for c in context.columns if c != "customer_id" and c not in scores.columns]
    return scores.merge(context[["customer_id", *added]], on="customer_id", how="left")


# --- figures (pure) -------------------------------------------------------------------------------


def nps(scores: pd.Series) -> float | None:
    """Net promoter score: % promoters (9-10) minus % detractors (0-6), None without answers."""
    answers = pd.to_numeric(scores, errors="coerce").dropna()
    if answers.empty:
        return None
    return float(100.0 * ((answers >= 9).mean() - (answers <= 6).mean()))


def recent(frame: pd.DataFrame, value: str, days_since: str, window: float) -> pd.Series:
    """A survey column where the answer is at most `window` days old (all, without the age)."""
    values = frame[value]
    if days_since in frame.columns:
        values = values.where(frame[days_since] <= window)
    return values


def repeat_purchase_rate(n_orders: pd.Series) -> float | None:
    """Share of customers with a purchase who came back for a second order."""
    buyers = n_orders[n_orders >= 1]
    return None if buyers.empty else float((buyers >= 2).mean())


def equity_share(customer_equity: float, market_value: float | None) -> float | None:
    """Our customers' total CLV over the whole market's customer value (an input)."""
    if market_value is None or market_value <= 0:
        return None
    return customer_equity / market_value


def top_share(clv: pd.Series, fraction: float) -> float | None:
    """Share of the customer equity held by the most valuable `fraction` of customers."""
    values = np.sort(clv.to_numpy(dtype=float))[::-1]
    total = values.sum()
    if len(values) == 0 or total <= 0:
        return None
    return float(values[: max(1, math.ceil(fraction * len(values)))].sum() / total)


def headline(
    frame: pd.DataFrame, summary: Mapping[str, Any], market_value: float | None = None
) -> dict[str, float | None]:
    """The figures of the top cards, from the run summary and the (context-joined) scores."""
    equity = float(summary["customer_equity"])
    at_risk = float(summary["value_at_risk"])
    figures: dict[str, float | None] = {
        "customers": float(summary["customers"]),
        "customer_equity": equity,
        "value_at_risk": at_risk,
        "value_at_risk_share": at_risk / equity if equity > 0 else None,
        "expected_churn_rate": float(summary["mean_churn_probability"]),
        "mean_clv": equity / float(summary["customers"]) if summary["customers"] else None,
        "median_clv": float(frame["clv"].median()),
        "top_10pct_share": top_share(frame["clv"], 0.10),
        "top_20pct_share": top_share(frame["clv"], 0.20),
        "customer_equity_share": equity_share(equity, market_value),
        "with_action": float(summary["with_action"]) if "with_action" in summary else None,
        "repeat_purchase_rate": None,
        "active_customers": None,
        "nps": None,
        "nps_answers": None,
        "detractors_to_follow_up": None,
        "csat_satisfied": None,
        "csat_mean": None,
        "csat_answers": None,
        "support_tickets_90d": None,
        "unresolved_tickets": None,
        "customers_with_unresolved": None,
        "complaints_90d": None,
    }
    if "lifecycle_stage" in frame.columns:
        figures["active_customers"] = float(
            (~frame["lifecycle_stage"].isin(["lapsed", "lost"]) & frame["lifecycle_stage"].notna())
            .astype(bool)
            .sum()
        )
    if "n_orders" in frame.columns:
        figures["repeat_purchase_rate"] = repeat_purchase_rate(frame["n_orders"])
    if "nps_last" in frame.columns:
        answers = recent(frame, "nps_last", "days_since_nps", SURVEY_WINDOW_DAYS)
        figures["nps"] = nps(answers)
        figures["nps_answers"] = float(answers.notna().sum())
        fresh = recent(frame, "nps_last", "days_since_nps", FOLLOW_UP_DAYS)
        figures["detractors_to_follow_up"] = float((fresh <= 6).sum())
    if "csat_last" in frame.columns:
        answers = recent(frame, "csat_last", "days_since_csat", SURVEY_WINDOW_DAYS).dropna()
        if not answers.empty:
            figures["csat_satisfied"] = float((answers >= CSAT_SATISFIED).mean())
            figures["csat_mean"] = float(answers.mean())
        figures["csat_answers"] = float(len(answers))
    for key, column in (
        ("support_tickets_90d", "support_ticket_90d"),
        ("unresolved_tickets", "unresolved_tickets"),
        ("complaints_90d", "complaint_90d"),
    ):
        if column in frame.columns:
            figures[key] = float(frame[column].fillna(0).sum())
    if "unresolved_tickets" in frame.columns:
        figures["customers_with_unresolved"] = float((frame["unresolved_tickets"] > 0).sum())
    return figures


def segment_value(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Segment lifetime value: customers, CLV and risk per value of column `by`.

    Returns:
        One row per group, most total CLV first: `group`, `customers`, `customer_share`,
        `total_clv` (the group's customer equity), `mean_clv` (segment lifetime value),
        `equity_share`, `value_at_risk`, `expected_churn_rate` (mean churn probability)
        and, when the frame has survey answers, `nps`.
    """
    groups = frame[by].astype("object").where(frame[by].notna(), UNKNOWN).astype("str")
    grouped = frame.assign(group=groups).groupby("group", observed=True)
    table = grouped.agg(
        customers=("customer_id", "size"),
        total_clv=("clv", "sum"),
        mean_clv=("clv", "mean"),
        value_at_risk=("value_at_risk", "sum"),
        expected_churn_rate=("churn_probability", "mean"),
    )
    table.insert(1, "customer_share", table["customers"] / len(frame))
    equity = frame["clv"].sum()
    table.insert(4, "equity_share", table["total_clv"] / equity if equity > 0 else np.nan)
    if "nps_last" in frame.columns:
        answers = recent(frame, "nps_last", "days_since_nps", SURVEY_WINDOW_DAYS)
        table["nps"] = answers.groupby(groups).apply(nps).astype("float64")
    table = table.sort_values(["total_clv", "customers"], ascending=False)
    return table.reset_index()


def vips_at_risk(frame: pd.DataFrame, n: int = 15) -> pd.DataFrame:
    """The most valuable customers most likely to leave: high value tier, most value at risk.

    High value is the scorer's `value_tier`; scores without it fall back to the top
    `VIP_VALUE_QUANTILE` of CLV. Customers in the scorer's low risk tier are left out: the
    list is for the ones to act on.
    """
    if "value_tier" in frame.columns:
        vip = frame["value_tier"].astype("object") == "high"
    else:
        vip = frame["clv"] >= frame["clv"].quantile(VIP_VALUE_QUANTILE)
    columns = [
        c
        for c in (
            "customer_id",
            "customer_type",
            "clv",
            "churn_probability",
            "value_at_risk",
            "segment",
            "lifecycle_stage",
            "recommended_action",
            "action_channel",
            "action_reason",
            "reasons",
        )
        if c in frame.columns
    ]
    if "risk_tier" in frame.columns:
        vip &= frame["risk_tier"].astype("object") != "low"
    top = frame.loc[vip, columns].sort_values("value_at_risk", ascending=False).head(n)
    return top.reset_index(drop=True)


def run_figures(
    summary: Mapping[str, Any], extra: Mapping[str, float | None] | None = None
) -> dict[str, Any]:
    """The figures a run contributes to the trend."""
    return {
        "customers": summary["customers"],
        "customer_equity": summary["customer_equity"],
        "value_at_risk": summary["value_at_risk"],
        "expected_churn_rate": summary["mean_churn_probability"],
        "with_action": summary.get("with_action"),
        **(extra or {}),
    }


# --- building ------------------------------------------------------------------------------------


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
        if load is None:
            from features.io import load_tables

            tables = load_tables(data_dir).tables
        else:
            tables = load(data_dir)
    trend_rows = []
    frame = pd.DataFrame()
    summary: dict[str, Any] = {}
    rates: dict[str, float | None] = {}
    # Each run's data figures build features three times: only the latest runs get them, so
    # a year of nightly runs still renders in seconds.
    with_data = {run.as_of for run in runs[-TREND_DATA_RUNS:]} if tables is not None else set()
    for run in runs:
        scores = read_scores(run)
        run_summary = read_summary(run, scores)
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
                    },
                ),
            }
        )
        if run is latest:
            frame, summary, rates = joined, run_summary, run_rates
    figures = {**headline(frame, summary, market_value), **rates}
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


# --- rendering -----------------------------------------------------------------------------------


def money(value: float | None) -> str:
    """A currency amount, compact (1.2M, 35.4k) for the cards."""
    if value is None or not math.isfinite(value):
        return "n/a"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:,.1f}{suffix}"
    return f"{value:,.0f}"


def percent(value: float | None, digits: int = 1) -> str:
    """A share in 0-1 as a percentage."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.{digits}f}%"


def number(value: float | None, digits: int = 0) -> str:
    """A plain number with thousands separators."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def esc(value: object) -> str:
    """Text for HTML."""
    return html.escape(str(value), quote=True)


def svg(
    draw: Callable[[Any], None], width: float = 7.0, height: float = 3.2, title: str = ""
) -> str:
    """A matplotlib figure as inline SVG: text stays text, nothing is fetched."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "font.family": "sans-serif",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    ):
        fig = plt.figure(figsize=(width, height))
        try:
            draw(fig)
            fig.tight_layout()
            buffer = io.StringIO()
            fig.savefig(buffer, format="svg")
        finally:
            plt.close(fig)
    text = buffer.getvalue()
    start = text.find("<svg")
    label = f' role="img" aria-label="{esc(title)}"' if title else ""
    return f'<div class="chart"{label}>{text[start:]}</div>'


def card(label: str, value: str, sub: str = "", warn: bool = False) -> str:
    """One headline figure."""
    kind = "kpi warn" if warn else "kpi"
    return (
        f'<div class="{kind}"><div class="label">{esc(label)}</div>'
        f'<div class="value">{esc(value)}</div><div class="sub">{esc(sub)}</div></div>'
    )


def missing(what: str) -> str:
    """The sentence a section shows when the data does not have its figures."""
    return f'<p class="missing">{esc(what)}: not in this data.</p>'


def html_table(
    frame: pd.DataFrame,
    formats: Mapping[str, Callable[[Any], str]],
    headers: Mapping[str, str],
    text_columns: Iterable[str] = (),
    css: Mapping[str, str] | None = None,
) -> str:
    """A frame as an HTML table, each column formatted by `formats` (default: str)."""
    text = set(text_columns)
    css = css or {}
    columns = list(frame.columns)

    def cls(column: str) -> str:
        name = css.get(column, "text" if column in text else "")
        return f' class="{name}"' if name else ""

    head = "".join(f"<th{cls(c)}>{esc(headers.get(c, c))}</th>" for c in columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(columns, record, strict=True):
            shown = "" if _is_missing(value) else formats.get(column, str)(value)
            cells.append(f"<td{cls(column)}>{esc(shown)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


GROUP_FORMATS: dict[str, Callable[[Any], str]] = {
    "customers": number,
    "customer_share": percent,
    "total_clv": lambda v: number(v),
    "mean_clv": lambda v: number(v, 1),
    "equity_share": percent,
    "value_at_risk": lambda v: number(v),
    "expected_churn_rate": percent,
    "nps": lambda v: number(v, 0),
}
GROUP_HEADERS = {
    "group": "",
    "customers": "customers",
    "customer_share": "share of customers",
    "total_clv": "customer equity",
    "mean_clv": "lifetime value per customer",
    "equity_share": "share of equity",
    "value_at_risk": "value at risk",
    "expected_churn_rate": "expected churn",
    "nps": "NPS",
}


def _kpis(d: Dashboard) -> str:
    h = d.headline
    window = int(d.frame["churn_window_days"].iloc[0]) if "churn_window_days" in d.frame else 90
    horizon = int(d.frame["horizon_days"].iloc[0]) if "horizon_days" in d.frame else 365
    active = h["active_customers"]
    cards = [
        card(
            "Customer equity",
            money(h["customer_equity"]),
            f"sum of CLV (margin over {horizon} days) of {number(h['customers'])} customers",
        ),
        card(
            "Value at risk",
            money(h["value_at_risk"]),
            f"{percent(h['value_at_risk_share'])} of equity: churn probability x CLV",
            warn=True,
        ),
        card(
            "Expected churn rate",
            percent(h["expected_churn_rate"]),
            f"mean probability of no purchase in the next {window} days",
            warn=True,
        ),
        card(
            "Retention, quarterly",
            percent(h.get("retention_quarterly")),
            f"monthly {percent(h.get('retention_monthly'))}; observed churn "
            f"{percent(h.get('churn_quarterly'))} / quarter",
        ),
        card(
            "Repeat purchase rate",
            percent(h["repeat_purchase_rate"]),
            "customers who came back for a second order",
        ),
        card(
            "Lifetime value per customer",
            money(h["mean_clv"]),
            f"median {money(h['median_clv'])}; top 20% hold {percent(h['top_20pct_share'], 0)}",
        ),
        card(
            "NPS",
            number(h["nps"]),
            f"{number(h['nps_answers'])} customers' latest answer, last {SURVEY_WINDOW_DAYS} days",
        ),
        card(
            "CSAT",
            percent(h["csat_satisfied"], 0),
            f"satisfied (4-5 of 5); mean {number(h['csat_mean'], 2)}",
        ),
        card(
            "Customer equity share",
            percent(h["customer_equity_share"]),
            "of the market's customer value" if d.market_value else "give --market-value to see it",
        ),
        card(
            "Active customers",
            number(active),
            "not lapsed or lost" if active is not None else "no lifecycle stage in the scores",
        ),
    ]
    return f'<section id="headline"><div class="kpis">{"".join(cards)}</div></section>'


def _clv_section(d: Dashboard) -> str:
    clv = d.frame["clv"].to_numpy(dtype=float)
    h = d.headline

    def draw(fig: Any) -> None:
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
        # CLV is heavy-tailed (most equity sits with a few customers): log-spaced bins show
        # the body and the tail; the customers worth next to nothing get the first bar.
        low = CLV_FLOOR
        high = max(float(clv.max()) if len(clv) else low, low * 10)
        bins = np.r_[0.0, np.geomspace(low, high, 30)]
        counts, _ = np.histogram(np.clip(clv, 0.0, high), bins=bins)
        left.bar(np.log10(bins[1:2]) - 0.5, counts[0], width=0.4, color="#9aa5b1")
        left.bar(
            np.log10(bins[1:-1]),
            counts[1:],
            width=np.diff(np.log10(bins[1:])),
            align="edge",
            color="#2f6f9f",
        )
        ticks = np.arange(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        left.set_xticks(
            [math.log10(low) - 0.5, *ticks],
            [f"< {low:g}", *(money(10.0**t) for t in ticks)],
        )
        left.set_xlabel("CLV (log scale)")
        left.set_ylabel("customers")
        left.set_title("How CLV is spread")
        ordered = np.sort(clv)[::-1]
        total = ordered.sum()
        share = np.cumsum(ordered) / total if total > 0 else np.zeros_like(ordered)
        x = np.arange(1, len(ordered) + 1) / max(len(ordered), 1)
        right.plot(np.r_[0, x], np.r_[0, share], color="#2f6f9f")
        right.plot([0, 1], [0, 1], color="#9aa5b1", linestyle="--", linewidth=0.8)
        right.set_xlabel("share of customers, most valuable first")
        right.set_ylabel("share of customer equity")
        right.set_title("Where the equity sits")

    quantiles = d.frame["clv"].quantile([0.1, 0.5, 0.9])
    note = (
        f"CLV quantiles: 10% {number(quantiles[0.1], 1)}, median {number(quantiles[0.5], 1)}, "
        f"90% {number(quantiles[0.9], 1)}. The top 10% of customers hold "
        f"{percent(h['top_10pct_share'], 0)} of the equity, the top 20% "
        f"{percent(h['top_20pct_share'], 0)}."
    )
    chart = svg(draw, 9.0, 3.2, "CLV distribution")
    return (
        f'<section id="clv"><h2>Customer lifetime value</h2><p class="note">{esc(note)}</p>'
        f'<div class="row">{chart}</div></section>'
    )


def _group_chart(table: pd.DataFrame, title: str) -> str:
    shown = table.head(12).iloc[::-1]

    def draw(fig: Any) -> None:
        ax = fig.subplots()
        y = np.arange(len(shown))
        ax.barh(y + 0.2, shown["total_clv"], height=0.4, color="#2f6f9f", label="customer equity")
        ax.barh(y - 0.2, shown["value_at_risk"], height=0.4, color="#d97a3a", label="value at risk")
        ax.set_yticks(y, shown["group"].tolist())
        ax.set_xlabel("CLV")
        ax.xaxis.set_major_formatter(lambda value, _: money(value))
        ax.legend(loc="lower right", frameon=False)

    return svg(draw, 5.0, 0.38 * len(shown) + 1.0, title)


def _segments_section(d: Dashboard) -> str:
    parts = [
        '<section id="segments"><h2>Segment lifetime value</h2>',
        '<p class="note">Customer equity, lifetime value per customer and value at risk per '
        "group. A customer's product category is the one they spent most on; their purchase "
        "channel the one of most orders.</p>",
    ]
    for by, title in GROUPINGS.items():
        parts.append(f'<h3 id="by-{by}">{esc(title)}</h3>')
        table = d.groups.get(by)
        if table is None:
            parts.append(missing(title))
            continue
        parts.append(
            f'<div class="row">{_group_chart(table, title)}<div>'
            + html_table(table, GROUP_FORMATS, GROUP_HEADERS, text_columns=["group"])
            + "</div></div>"
        )
    parts.append("</section>")
    return "".join(parts)


def _rows_table(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table of labelled figures."""
    body = "".join(f'<tr><td class="text">{esc(a)}</td><td>{esc(b)}</td></tr>' for a, b in rows)
    return f"<table><tbody>{body}</tbody></table>"


def _retention_section(d: Dashboard) -> str:
    h = d.headline
    rows = [
        ("Expected churn, next churn window (model)", percent(h["expected_churn_rate"])),
        (
            "Retention, monthly (bought last month and this month)",
            percent(h.get("retention_monthly")),
        ),
        ("Observed churn, monthly", percent(h.get("churn_monthly"))),
        (
            "Retention, quarterly (bought last quarter and this quarter)",
            percent(h.get("retention_quarterly")),
        ),
        ("Observed churn, quarterly", percent(h.get("churn_quarterly"))),
        ("Repeat purchase rate (2+ orders among buyers)", percent(h["repeat_purchase_rate"])),
    ]
    extra = ""
    if h.get("retention_quarterly") is None and h["repeat_purchase_rate"] is None:
        extra = missing("Retention and repeat purchase history (give --data)")
    return (
        '<section id="retention"><h2>Churn, retention and repeat purchase</h2>'
        f"{_rows_table(rows)}{extra}</section>"
    )


def _voice_section(d: Dashboard) -> str:
    h = d.headline
    parts = ['<section id="voice"><h2>Customer voice and support</h2>']
    if h["nps"] is None:
        parts.append(missing("NPS"))
    else:
        answers = recent(d.frame, "nps_last", "days_since_nps", SURVEY_WINDOW_DAYS).dropna()
        shares = [
            float((answers <= 6).mean()),
            float(((answers >= 7) & (answers <= 8)).mean()),
            float((answers >= 9).mean()),
        ]

        def draw(fig: Any) -> None:
            ax = fig.subplots()
            left = 0.0
            colors = ("#c0392b", "#9aa5b1", "#2e8b57")
            for name, share, color in zip(
                ("detractors", "passives", "promoters"), shares, colors, strict=True
            ):
                ax.barh([0], [share], left=left, color=color, label=f"{name} {share:.0%}")
                left += share
            ax.set_xlim(0, 1)
            ax.set_yticks([])
            ax.legend(ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
            ax.set_title(f"NPS {h['nps']:+.0f} from {len(answers):,} customers")

        parts.append(f'<div class="row">{svg(draw, 7.0, 1.6, "NPS answers")}</div>')
        parts.append(
            f'<p class="note">{number(h["detractors_to_follow_up"])} detractors answered in the '
            f"last {FOLLOW_UP_DAYS} days: each needs an immediate follow-up.</p>"
        )
    if h["csat_answers"] is None:
        parts.append(missing("CSAT"))
    else:
        parts.append(
            f"<p>CSAT: {percent(h['csat_satisfied'], 0)} satisfied (4 or 5 of 5), mean "
            f"{number(h['csat_mean'], 2)}, from {number(h['csat_answers'])} customers' latest "
            "answer.</p>"
        )
    if h["unresolved_tickets"] is None and h["support_tickets_90d"] is None:
        parts.append(missing("Support tickets"))
    else:
        parts.append(
            _rows_table(
                [
                    ("Support tickets, last 90 days", number(h["support_tickets_90d"])),
                    ("Unresolved tickets", number(h["unresolved_tickets"])),
                    ("Customers with an unresolved ticket", number(h["customers_with_unresolved"])),
                    ("Complaints, last 90 days", number(h["complaints_90d"])),
                ]
            )
            + '<p class="note">Time to resolution and ticket topics: not in this data.</p>'
        )
    parts.append("</section>")
    return "".join(parts)


VIP_HEADERS = {
    "customer_id": "customer",
    "customer_type": "type",
    "clv": "CLV",
    "churn_probability": "churn probability",
    "value_at_risk": "value at risk",
    "segment": "segment",
    "lifecycle_stage": "stage",
    "recommended_action": "action",
    "action_channel": "channel",
    "action_reason": "why this action",
    "reasons": "why at risk",
}


def _vip_section(d: Dashboard) -> str:
    intro = (
        '<section id="vips"><h2>VIPs most at risk</h2><p class="note">High-value customers with '
        "the most value at risk, why the model thinks they may leave and what to do.</p>"
    )
    if d.vips.empty:
        return intro + '<p class="missing">No high-value customer in this run.</p></section>'
    table = html_table(
        d.vips,
        {
            "clv": lambda v: number(v, 0),
            "churn_probability": percent,
            "value_at_risk": lambda v: number(v, 0),
        },
        VIP_HEADERS,
        text_columns=[
            "customer_id",
            "customer_type",
            "segment",
            "lifecycle_stage",
            "recommended_action",
            "action_channel",
        ],
        css={"reasons": "reasons", "action_reason": "reasons"},
    )
    return f"{intro}{table}</section>"


def _actions_section(d: Dashboard) -> str:
    actions = pd.Series(d.summary.get("actions") or {}, dtype="float64").sort_values()
    parts = ['<section id="actions"><h2>Recommended actions</h2>']
    if actions.empty:
        parts.append(missing("Recommended actions"))
    else:

        def draw(fig: Any) -> None:
            ax = fig.subplots()
            ax.barh(actions.index.tolist(), actions.to_numpy(), color="#2f6f9f")
            ax.set_xlabel("customers")
            ax.set_title("Customers per recommended action")

        parts.append(
            f'<div class="row">{svg(draw, 6.5, 0.35 * len(actions) + 1.2, "Actions")}</div>'
        )
    changes = d.summary.get("changes")
    if isinstance(changes, Mapping) and changes.get("changed_actions") is None:
        parts.append("<p>No earlier run to compare the actions with.</p>")
    elif isinstance(changes, Mapping):
        since = changes.get("previous_as_of")
        parts.append(
            f"<p>Since the previous run{f' ({esc(since)})' if since else ''}: "
            f"{number(changes.get('changed_actions'))} customers' recommended action changed, "
            f"{number(changes.get('new_customers'))} new customers, "
            f"{number(changes.get('dropped_customers'))} gone.</p>"
        )
        transitions = changes.get("transitions")
        if isinstance(transitions, Mapping) and transitions:
            shown = pd.DataFrame(list(transitions.items())[:8], columns=["transition", "customers"])
            parts.append(html_table(shown, {"customers": number}, {}, text_columns=["transition"]))
    elif d.changes is not None:
        parts.append(
            f"<p>{number(len(d.changes))} customers' recommended action changed since the "
            "previous run.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


TREND_SERIES = {
    "customer_equity": ("Customer equity", money),
    "value_at_risk": ("Value at risk", money),
    "expected_churn_rate": ("Expected churn rate", percent),
    "retention_quarterly": ("Retention, quarterly", percent),
    "repeat_purchase_rate": ("Repeat purchase rate", percent),
    "nps": ("NPS", lambda value: number(value, 1)),
    "customers": ("Customers", number),
}


def _trend_section(d: Dashboard) -> str:
    trend = d.trend
    parts = [
        '<section id="trend"><h2>Trend over the runs</h2>',
        f'<p class="note">{len(trend)} run(s) in this folder.</p>',
    ]
    series = [k for k in TREND_SERIES if k in trend.columns and trend[k].notna().any()]
    if len(trend) < 2:
        parts.append('<p class="missing">One run so far: the trend needs at least two.</p>')
    else:
        dates = pd.to_datetime(trend["as_of"])

        def draw(fig: Any) -> None:
            import matplotlib.dates as mdates

            cols = 3
            rows = math.ceil(len(series) / cols)
            axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
            for ax, key in zip(axes, series, strict=False):
                title, fmt = TREND_SERIES[key]
                ax.plot(dates, trend[key].astype("float64"), marker="o", color="#2f6f9f")
                ax.set_title(title)
                locator = mdates.AutoDateLocator(maxticks=5)
                ax.xaxis.set_major_locator(locator)
                ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
                ax.yaxis.set_major_formatter(lambda value, _, fmt=fmt: fmt(value))
            for ax in axes[len(series) :]:
                ax.set_visible(False)

        rows = math.ceil(len(series) / 3)
        parts.append(f'<div class="row">{svg(draw, 10.0, 2.6 * rows, "Trend")}</div>')
    shown = trend[["as_of", *series]].tail(TREND_TABLE_RUNS).iloc[::-1].copy()
    if len(trend) > TREND_TABLE_RUNS:
        parts.append(f'<p class="note">The latest {TREND_TABLE_RUNS} runs:</p>')
    shown["as_of"] = pd.to_datetime(shown["as_of"]).dt.strftime("%Y-%m-%d")
    formats = {k: (lambda f: lambda v: f(float(v)))(TREND_SERIES[k][1]) for k in series}
    headers = {"as_of": "as of", **{k: TREND_SERIES[k][0] for k in series}}
    parts.append(html_table(shown, formats, headers, text_columns=["as_of"]))
    parts.append("</section>")
    return "".join(parts)


def render_html(d: Dashboard) -> str:
    """The whole page: one string, no external resource."""
    versions = ", ".join(str(v) for v in d.summary.get("model_versions", []))
    subtitle = (
        f"Scores as of {d.run.as_of.date()} for {number(d.headline['customers'])} customers; "
        f"model version {versions or 'n/a'}. Source: {d.run.folder}."
    )
    body = "".join(
        [
            _kpis(d),
            _clv_section(d),
            _segments_section(d),
            _retention_section(d),
            _voice_section(d),
            _vip_section(d),
            _actions_section(d),
            _trend_section(d),
        ]
    )
    footer = (
        f"Generated {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC by vafa report; "
        f"{d.data_note}. Customer equity = sum of CLV; value at risk = churn probability x CLV; "
        "NPS = % promoters (9-10) - % detractors (0-6)."
    )
    template = string.Template(
        importlib.resources.files("serving.report").joinpath("template.html").read_text("utf-8")
    )
    return template.substitute(
        title=esc(f"Vafa: customer value dashboard, {d.run.as_of.date()}"),
        subtitle=esc(subtitle),
        body=body,
        footer=esc(footer),
    )
