"""The score columns: the one list the scorer writes and every reader of score rows checks."""

from __future__ import annotations

from features.schema import ID

# The numeric scores: their distributions go in the run summary and are watched for drift.
VALUE_COLUMNS = ("churn_probability", "predicted_spend", "clv", "value_at_risk")
# `customer_type` only where the customers table has a `segment`.
SEGMENT_COLUMNS = ("segment", "lifecycle_stage", "value_tier", "risk_tier", "customer_type")
ACTION_COLUMNS = (
    "recommended_action",
    "action_channel",
    "action_reason",
    "discount_eligible",
    "preferred_channel",
    "triggers",
)
MODEL_COLUMNS = ("model_version", "churn_window_days", "horizon_days")
SCORE_COLUMNS = (
    ID,
    "as_of",
    *VALUE_COLUMNS,
    "expected_next_order",
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
    "segment",
    "recommended_action",
    "reasons",
    "model_version",
)
NO_ACTION = "no_action"
