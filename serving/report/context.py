"""Customer context for the dashboard, rebuilt from the data folder with the feature code."""

from __future__ import annotations

import pandas as pd

from features.build import build_features
from features.schema import Tables

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
