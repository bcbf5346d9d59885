"""Hand-made scored customers for the policy tests: a quiet one, and what makes each rule fire."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from serving.scoring.policy.apply import recommend
from serving.scoring.policy.schema import Policy

NAN = math.nan

# A customer for whom no trigger fires: mid value, mid risk, buying in rhythm, content user,
# no surveys or tickets, no channel answered, and no claim to a discount (two purchase days,
# one late payment, no referral).
QUIET: dict[str, Any] = {
    "customer_id": "c",
    "churn_probability": 0.4,
    "clv": 300.0,
    "value_tier": "mid",
    "risk_tier": "mid",
    "segment": "loyal",
    "recency_days": 10.0,
    "tenure_days": 400.0,
    "n_purchase_days": 2.0,
    "gap_mean_days": 20.0,
    "overdue_ratio": 0.5,
    "last_order_vs_mean": 1.0,
    "discount_order_share": 0.0,
    "payment_late_total": 1.0,
    "referral_total": 0.0,
    "nps_last": NAN,
    "days_since_nps": NAN,
    "csat_last": NAN,
    "days_since_csat": NAN,
    "unresolved_tickets": 0.0,
    "days_since_support_ticket": NAN,
    "content_view_total": 3.0,
    "product_views_since_purchase": 0.0,
    "days_since_product_view": NAN,
    "email_open_90d": 0.0,
    "email_click_90d": 0.0,
    "sms_click_90d": 0.0,
    "push_open_90d": 0.0,
}
# Who deserves a discount: a long, regular customer.
LOYAL = {"tenure_days": 500.0, "n_purchase_days": 6.0}
AT_RISK = {"segment": "at_risk", "risk_tier": "high", "churn_probability": 0.75}
VIP_AT_RISK = {**AT_RISK, "value_tier": "high", "clv": 2500.0, "churn_probability": 0.85}
DETRACTOR = {"nps_last": 3.0, "days_since_nps": 12.0}
TICKET = {"unresolved_tickets": 1.0, "days_since_support_ticket": 20.0}
OVERDUE = {"recency_days": 40.0, "overdue_ratio": 2.0}
VIEWED = {"product_views_since_purchase": 2.0, "days_since_product_view": 3.0}
STEP_UP = {"last_order_vs_mean": 2.5, "recency_days": 5.0}


def customers(*overrides: dict[str, Any]) -> pd.DataFrame:
    rows = [{**QUIET, "customer_id": f"c{i}", **o} for i, o in enumerate(overrides)]
    frame = pd.DataFrame(rows)
    return frame.astype({c: "str" for c in ("customer_id", "value_tier", "risk_tier", "segment")})


def one(policy: Policy, **override: Any) -> dict[str, Any]:
    return recommend(customers(override), policy).iloc[0].to_dict()
