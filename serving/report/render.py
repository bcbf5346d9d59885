"""The dashboard page: its sections, in order, in `template.html`.

The page has no script and loads nothing: charts are inline SVG drawn by matplotlib, and a
Content-Security-Policy forbids any fetch, so it opens the same offline as online.
"""

from __future__ import annotations

import importlib.resources
import math
import string
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from serving.report.cards import banner, kpis, subscription_cards
from serving.report.figures import FOLLOW_UP_DAYS, GROUPINGS, SURVEY_WINDOW_DAYS, recent
from serving.report.markup import esc, html_table, missing, money, number, percent, svg

if TYPE_CHECKING:
    from serving.report.build import Dashboard

TREND_TABLE_RUNS = 12
CLV_FLOOR = 1.0  # customers below it share the histogram's first bar


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
        (
            "Expected churn, next churn window (model), active customers",
            percent(h["expected_churn_rate"]),
        ),
        (
            "Expected churn, next churn window (model), all customers",
            percent(h["expected_churn_rate_all"]),
        ),
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
    "expected_churn_rate": ("Expected churn rate, active customers", percent),
    "expected_churn_rate_all": ("Expected churn rate, all customers", percent),
    "retention_quarterly": ("Retention, quarterly", percent),
    "repeat_purchase_rate": ("Repeat purchase rate", percent),
    "nps": ("NPS", lambda value: number(value, 1)),
    "customers": ("Customers", number),
    "mrr": ("MRR (subscriptions)", money),
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
            banner(d),
            kpis(d),
            subscription_cards(d),
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
