"""The dashboard's figures, pure: the (context-joined) scores in, numbers and tables out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

SURVEY_WINDOW_DAYS = 365
FOLLOW_UP_DAYS = 30
CSAT_SATISFIED = 4.0  # on the contract's 1-5 scale: 4 and 5 are satisfied
VIP_VALUE_QUANTILE = 0.8  # only without the scorer's value tier: the top 20% by CLV
GROUPINGS = {
    "segment": "Segment (value x risk)",
    "customer_type": "Customer type",
    "main_category": "Product category (most spend)",
    "dominant_channel": "Purchase channel (most orders)",
}
UNKNOWN = "unknown"


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


def equity_range(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """The customer equity's range from the run summary (`serving.runs.equity_interval`).

    All None for a run scored by a model without ranges, or summarised before they existed.
    """
    stored = summary.get("customer_equity_interval") or {}
    names = {"low": "customer_equity_low", "high": "customer_equity_high", "level": "equity_level"}
    figures: dict[str, float | None] = {}
    for end, name in names.items():
        value = stored.get(end)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return dict.fromkeys(names.values())
        figures[name] = float(value)
    return figures


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def population_figures(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """The rates over the decision population, with the all-customer figures beside them.

    The decision population (`features.population`: customers who bought within the churn
    window) is what the business acts on; customers gone long ago are certain churners who
    would swamp every rate. A run scored before the scorer marked the population has no
    such figures (None); the all-customer ones are always there, named `..._all`.
    """
    figures: dict[str, float | None] = {
        "active_customers": None,
        "expected_churn_rate": None,
        "expected_churn_rate_all": float(summary["mean_churn_probability"]),
        "value_at_risk_active": None,
        "value_at_risk_share": None,
        "value_at_risk_share_all": _share(
            float(summary["value_at_risk"]), float(summary["customer_equity"])
        ),
    }
    population = summary.get("decision_population")
    if population:
        churn = population["mean_churn_probability"]
        at_risk = float(population["value_at_risk"])
        figures |= {
            "active_customers": float(population["customers"]),
            "expected_churn_rate": None if churn is None else float(churn),
            "value_at_risk_active": at_risk,
            "value_at_risk_share": _share(at_risk, float(population["customer_equity"])),
        }
    return figures


def headline(
    frame: pd.DataFrame, summary: Mapping[str, Any], market_value: float | None = None
) -> dict[str, float | None]:
    """The figures of the top cards, from the run summary and the (context-joined) scores.

    Churn and value-at-risk rates are over the decision population (`population_figures`),
    amounts over every customer.
    """
    equity = float(summary["customer_equity"])
    at_risk = float(summary["value_at_risk"])
    figures: dict[str, float | None] = {
        "customers": float(summary["customers"]),
        "customer_equity": equity,
        **equity_range(summary),
        "value_at_risk": at_risk,
        **population_figures(summary),
        "mean_clv": equity / float(summary["customers"]) if summary["customers"] else None,
        "median_clv": float(frame["clv"].median()),
        "top_10pct_share": top_share(frame["clv"], 0.10),
        "top_20pct_share": top_share(frame["clv"], 0.20),
        "customer_equity_share": equity_share(equity, market_value),
        "with_action": float(summary["with_action"]) if "with_action" in summary else None,
        "repeat_purchase_rate": None,
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
    rates = population_figures(summary)
    return {
        "customers": summary["customers"],
        "customer_equity": summary["customer_equity"],
        "value_at_risk": summary["value_at_risk"],
        "expected_churn_rate": rates["expected_churn_rate"],
        "expected_churn_rate_all": rates["expected_churn_rate_all"],
        "active_customers": rates["active_customers"],
        "with_action": summary.get("with_action"),
        **(extra or {}),
    }


RENEWAL_WINDOWS_DAYS = (30, 90)
NRR_MAX_DAYS = 365  # net revenue retention over at most a year, the period it is quoted for


def subscriber_mrr(frame: pd.DataFrame) -> pd.Series | None:
    """MRR per subscriber (customers with an `mrr`), by customer_id; None for a retail run.

    A run is a subscription run when its scores have `mrr` for someone: runs of data without
    a subscriptions table (or scored before the column existed) have none.
    """
    if "mrr" not in frame.columns:
        return None
    mrr = pd.to_numeric(frame["mrr"], errors="coerce")
    held = mrr.notna().to_numpy()
    if not held.any():
        return None
    return pd.Series(mrr.to_numpy()[held], index=frame["customer_id"].to_numpy()[held], name="mrr")


def mrr_figures(frame: pd.DataFrame) -> dict[str, float] | None:
    """Total MRR and the renewals due within 30 and 90 days (count and MRR); None for retail.

    A renewal is due within N days when the subscriber's `days_to_renewal` is at most N.
    """
    if subscriber_mrr(frame) is None:
        return None
    mrr = pd.to_numeric(frame["mrr"], errors="coerce")
    held = mrr.notna()
    figures = {"subscribers": float(held.sum()), "mrr": float(mrr[held].sum())}
    days = (
        pd.to_numeric(frame["days_to_renewal"], errors="coerce")
        if "days_to_renewal" in frame.columns
        else pd.Series(np.nan, index=frame.index)
    )
    for window in RENEWAL_WINDOWS_DAYS:
        due = held & (days <= window)
        figures[f"renewals_{window}d"] = float(due.sum())
        figures[f"renewals_{window}d_mrr"] = float(mrr[due].sum())
    return figures


def churned_mrr(previous: pd.Series, current: pd.Series) -> dict[str, float]:
    """The MRR lost with the subscribers of the previous run who hold no term now.

    Args:
        previous: MRR per subscriber in the previous run (`subscriber_mrr`).
        current: MRR per subscriber now; a customer absent from it holds no term.

    Returns:
        `churned_subscribers` and `churned_mrr` (their MRR in the previous run).
    """
    gone = ~previous.index.isin(current.index)
    return {
        "churned_subscribers": float(gone.sum()),
        "churned_mrr": float(previous[gone].sum()),
    }


def net_revenue_retention(base: pd.Series, current: pd.Series) -> float | None:
    """MRR now of the base run's subscribers over their MRR then (None when that was 0).

    Churned subscribers count 0 now, upgrades and add-ons more than then; customers who
    subscribed after the base run are left out.
    """
    then = float(base.sum())
    if then <= 0:
        return None
    now = float(current.reindex(base.index).fillna(0.0).sum())
    return now / then


def subscription_figures(
    frame: pd.DataFrame, runs: Sequence[tuple[pd.Timestamp, pd.Series | None]]
) -> dict[str, Any] | None:
    """The subscription cards' figures: MRR and renewals now, churned MRR and NRR over time.

    Args:
        frame: the latest run's scores.
        runs: each published run's date and MRR per subscriber (`subscriber_mrr`, None for a
            run without MRR), oldest first; the last is the latest.

    Returns:
        None when the latest run has no MRR (retail); else `mrr_figures`, `churned_since` (the
        previous run's date, None when it had no MRR) with `churned_subscribers` and
        `churned_mrr`, and `nrr_since` (the earliest run with MRR at most `NRR_MAX_DAYS`
        before the latest) with `net_revenue_retention`; None where there is no such run.
    """
    latest_as_of, current = runs[-1]
    now = mrr_figures(frame)
    if current is None or now is None:
        return None
    figures: dict[str, Any] = {
        **now,
        "churned_since": None,
        "churned_subscribers": None,
        "churned_mrr": None,
        "nrr_since": None,
        "net_revenue_retention": None,
    }
    previous_as_of, previous = runs[-2] if len(runs) > 1 else (None, None)
    if previous is not None:
        figures |= {"churned_since": previous_as_of, **churned_mrr(previous, current)}
    earliest = latest_as_of - pd.Timedelta(days=NRR_MAX_DAYS)
    bases = [(day, mrr) for day, mrr in runs[:-1] if mrr is not None and day >= earliest]
    if bases:
        base_as_of, base = bases[0]
        figures |= {
            "nrr_since": base_as_of,
            "net_revenue_retention": net_revenue_retention(base, current),
        }
    return figures
