"""The score columns: the one list the scorer writes and every reader of score rows checks."""

from __future__ import annotations

from features.schema import ID

# The numeric scores: their distributions go in the run summary and are watched for drift.
VALUE_COLUMNS = ("churn_probability", "predicted_spend", "clv", "value_at_risk")
# Each customer's range of predicted spend and of CLV at the model's level (80%: the actual
# value falls in it for 80% of customers, measured out of time; `training.intervals`). Null
# for a model fitted before ranges existed. Not watched for drift: they move with the values.
INTERVAL_COLUMNS = ("spend_low", "spend_high", "clv_low", "clv_high")
# `customer_type` only where the customers table has a `segment`.
SEGMENT_COLUMNS = ("segment", "lifecycle_stage", "value_tier", "risk_tier", "customer_type")
# What a contact needs: the action, its channel and the reason given to the agent.
CONTACT_COLUMNS = ("recommended_action", "action_channel", "action_reason")
ACTION_COLUMNS = (
    *CONTACT_COLUMNS,
    "discount_eligible",
    "preferred_channel",
    "triggers",
    "superseded_triggers",
)
# When the customer's next order is due, from their own rhythm: the date is never in the past;
# a customer past it is `overdue` by `days_overdue` (see `serving.scoring.scorer`).
NEXT_ORDER_COLUMNS = ("expected_next_order", "next_order_status", "days_overdue")
NEXT_ORDER_STATUSES = ("due", "overdue", "unknown")
# A subscriber's recurring revenue and next renewal, from the features of the same names
# (`features.subscriptions`): null for a customer holding no term and for data without a
# subscriptions table. The dashboard's MRR, renewals due, churned MRR and net revenue retention.
SUBSCRIPTION_COLUMNS = ("mrr", "days_to_renewal")
# Whether the customer is in the decision population (`features.population`: bought within the
# churn window): the population of the headline churn rate and of the value-at-risk rates.
ACTIVE_COLUMN = "active_customer"
MODEL_COLUMNS = ("model_version", "churn_window_days", "horizon_days")
SCORE_COLUMNS = (
    ID,
    "as_of",
    *VALUE_COLUMNS,
    *INTERVAL_COLUMNS,
    *NEXT_ORDER_COLUMNS,
    *SUBSCRIPTION_COLUMNS,
    ACTIVE_COLUMN,
    *SEGMENT_COLUMNS,
    *ACTION_COLUMNS,
    "reasons",
    *MODEL_COLUMNS,
)
"""Every column of a score row, in the order the scorer writes them."""
OPTIONAL_COLUMNS = frozenset({"customer_type"})
# What the contract promises in every score row (a reader may rely on these and no more).
CONTRACT_COLUMNS = (
    ID,
    "as_of",
    *VALUE_COLUMNS,
    *INTERVAL_COLUMNS,
    "segment",
    "recommended_action",
    "reasons",
    "model_version",
)
# What the dashboard reads of every run (older runs may lack the rest).
DASHBOARD_COLUMNS = (
    ID,
    "churn_probability",
    "clv",
    "value_at_risk",
    "segment",
    "recommended_action",
    "model_version",
)
# What a campaign plan reads of a run.
CAMPAIGN_COLUMNS = (ID, "churn_probability", "clv", *CONTACT_COLUMNS, "segment")
NO_ACTION = "no_action"
