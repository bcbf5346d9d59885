"""The top of the dashboard: a banner for a flagged run, and the headline cards."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from serving.report.figures import RENEWAL_WINDOWS_DAYS, SURVEY_WINDOW_DAYS
from serving.report.markup import card, esc, money, number, percent

if TYPE_CHECKING:
    from serving.report.build import Dashboard


def _window(d: Dashboard) -> int:
    """The churn window of the run's model, in days."""
    return int(d.frame["churn_window_days"].iloc[0]) if "churn_window_days" in d.frame else 90


def _churn_card(d: Dashboard) -> str:
    """The expected churn rate of the decision population, the all-customer rate beside it."""
    h, window = d.headline, _window(d)
    everyone = f"all {number(h['customers'])} customers, lapsed and lost included: " + percent(
        h["expected_churn_rate_all"]
    )
    if h["expected_churn_rate"] is None:
        return card(
            "Expected churn rate",
            "n/a",
            f"this run does not mark its active customers (score it again); {everyone}",
            warn=True,
        )
    return card(
        "Expected churn rate",
        percent(h["expected_churn_rate"]),
        f"mean over the {number(h['active_customers'])} active customers (bought in the last "
        f"{window} days), next {window} days; {everyone}",
        warn=True,
    )


def _equity_range(h: dict[str, float | None]) -> str:
    """The customer equity's range, said in words; nothing for a run without one."""
    if h.get("customer_equity_low") is None:
        return ""
    return (
        f"; {percent(h['equity_level'], 0)} range {money(h['customer_equity_low'])} to "
        f"{money(h['customer_equity_high'])}"
    )


def banner(d: Dashboard) -> str:
    """A warning on top of the page when the run is flagged stale or drifted, else nothing."""
    stale, drift = d.flags.get("stale", []), d.flags.get("drift", [])
    if not stale and not drift:
        return ""
    items = [f"<li>Stale data: {esc(flag)}</li>" for flag in stale]
    if drift:
        threshold = (d.summary.get("drift") or {}).get("threshold")
        past = f" past PSI {threshold:g}" if isinstance(threshold, int | float) else ""
        items.append(
            f"<li>Drift{esc(past)} in {len(drift)} column(s): {esc(', '.join(drift[:10]))}"
            f"{', ...' if len(drift) > 10 else ''}</li>"
        )
    kinds = " and ".join(k for k, flagged in (("stale", stale), ("drifted", drift)) if flagged)
    return (
        f'<section id="flags" class="banner" role="alert"><strong>This run is flagged '
        f"{kinds}.</strong> Its figures may not describe the customers as they are now: check "
        f"the data feeds and the model before acting on them.<ul>{''.join(items)}</ul></section>"
    )


def kpis(d: Dashboard) -> str:
    """The headline cards: amounts over every customer, rates over the active customers."""
    h = d.headline
    window = _window(d)
    horizon = int(d.frame["horizon_days"].iloc[0]) if "horizon_days" in d.frame else 365
    active = h["active_customers"]
    if h["value_at_risk_share"] is None:
        risk_share = f"{percent(h['value_at_risk_share_all'])} of equity (all customers)"
    else:
        risk_share = (
            f"{percent(h['value_at_risk_share'])} of the active customers' equity (all "
            f"customers: {percent(h['value_at_risk_share_all'])})"
        )
    cards = [
        card(
            "Customer equity",
            money(h["customer_equity"]),
            f"sum of CLV (margin over {horizon} days) of {number(h['customers'])} customers"
            + _equity_range(h),
        ),
        card(
            "Value at risk",
            money(h["value_at_risk"]),
            f"churn probability x CLV, all customers; {risk_share}",
            warn=True,
        ),
        _churn_card(d),
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
            f"bought in the last {window} days: the decision population"
            if active is not None
            else "this run does not mark its active customers",
        ),
    ]
    return f'<section id="headline"><div class="kpis">{"".join(cards)}</div></section>'


def _since(day: object) -> str:
    """A run's date as text (YYYY-MM-DD)."""
    return f"{pd.Timestamp(day).date()}"


def subscription_cards(d: Dashboard) -> str:
    """MRR, renewals due, churned MRR and net revenue retention; nothing for a retail run."""
    s = d.subscriptions
    if s is None:
        return ""
    if s["churned_since"] is None:
        churned = card("Churned MRR", "n/a", "needs a previous run with MRR")
    else:
        churned = card(
            "Churned MRR",
            money(s["churned_mrr"]),
            f"{number(s['churned_subscribers'])} subscribers of the run of "
            f"{_since(s['churned_since'])} hold no term now (their MRR then)",
            warn=True,
        )
    if s["nrr_since"] is None:
        nrr = card("Net revenue retention", "n/a", "needs an earlier run with MRR (within a year)")
    else:
        nrr = card(
            "Net revenue retention",
            percent(s["net_revenue_retention"]),
            f"MRR now of the subscribers of {_since(s['nrr_since'])} over their MRR then "
            f"({_since(s['nrr_since'])} to {_since(d.run.as_of)}; churn, downgrades and upgrades "
            "included, new subscribers not)",
        )
    cards = [
        card(
            "MRR",
            money(s["mrr"]),
            f"monthly recurring revenue of {number(s['subscribers'])} subscribers",
        ),
        *(
            card(
                f"Renewals due, {days} days",
                number(s[f"renewals_{days}d"]),
                f"subscribers whose plan renews within {days} days, "
                f"{money(s[f'renewals_{days}d_mrr'])} MRR",
            )
            for days in RENEWAL_WINDOWS_DAYS
        ),
        churned,
        nrr,
    ]
    return (
        '<section id="subscriptions"><h2>Subscriptions</h2>'
        f'<div class="kpis">{"".join(cards)}</div></section>'
    )
