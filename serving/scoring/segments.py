"""Value x risk segments and lifecycle stages, with cut points taken from the score distribution.

The grid puts every scored customer in a value tier (their CLV against the CLV quantiles of a
reference population) and a risk tier (their churn probability against its quantiles). Cut
points are quantiles, never currency amounts, so the same settings work in any currency and
any market size; fit them once on the scores the model was validated on and store them with
the model (`SegmentThresholds.to_dict`), or refit on each night's scores.

Segments, first match wins:

=================  ============================================================================
lost               lifecycle stage `lost` (see below), or low value with very high risk
                   (churn probability above the `lost_risk_quantile` cut): not worth a
                   personal effort any more.
promising_new      tenure below `new_customer_days` and risk not high: a newcomer on track.
vip                high value and low risk: the best customers; appreciate, do not disturb.
at_risk            high or mid value and high risk: valuable customers about to leave.
needs_attention    high value with mid risk, or mid value with mid risk: slipping.
loyal              mid or low value with low risk: they stay, with smaller baskets.
hibernating        low value with mid or high risk: buying little and rarely.
=================  ============================================================================

Lifecycle stages, from behaviour only (first match wins; missing when the customer has no
order, e.g. only refunds):

=========  ===================================================================================
lost       no purchase for more than `lost_recency_days`, or past the churn window and at
           least `lost_overdue_ratio` times their own usual gap between purchases.
lapsed     no purchase for more than `churn_window_days` (the churn definition).
lapsing    later than `lapsing_overdue_ratio` times their own usual gap (`overdue_ratio`).
new        first purchase less than `new_customer_days` ago.
active     everyone else.
=========  ===================================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.columns import ColumnData, categorical, numbers, row_count
from training.thresholds import SegmentThresholds

TIERS = ("low", "mid", "high")
SEGMENTS = (
    "vip",
    "loyal",
    "promising_new",
    "needs_attention",
    "at_risk",
    "hibernating",
    "lost",
)
LIFECYCLE_STAGES = ("new", "active", "lapsing", "lapsed", "lost")
SEGMENT_COLUMNS = ("value_tier", "risk_tier", "segment", "lifecycle_stage")
BEHAVIOUR_COLUMNS = ("tenure_days", "recency_days", "overdue_ratio")

# Rows: value tier low, mid, high; columns: risk tier low, mid, high.
_GRID = (
    ("loyal", "hibernating", "hibernating"),
    ("loyal", "needs_attention", "at_risk"),
    ("vip", "needs_attention", "at_risk"),
)
_GRID_CODES = np.array([[SEGMENTS.index(s) for s in row] for row in _GRID], dtype=np.int8)


def _tier(values: np.ndarray, cuts: tuple[float, float]) -> np.ndarray:
    """Tier codes 0 (low), 1 (mid), 2 (high); strictly above a cut moves up, NaN stays low."""
    with np.errstate(invalid="ignore"):
        return (values > cuts[0]).astype(np.int8) + (values > cuts[1]).astype(np.int8)


# Built once: a categorical dtype checks its categories when made, every call otherwise.
_DTYPES: dict[tuple[str, ...], pd.CategoricalDtype] = {
    names: pd.CategoricalDtype(list(names)) for names in (TIERS, SEGMENTS, LIFECYCLE_STAGES)
}


def _categorical(codes: np.ndarray, categories: tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, dtype=_DTYPES[categories])


def lifecycle_codes(
    data: ColumnData, thresholds: SegmentThresholds, n: int | None = None
) -> np.ndarray:
    """Codes into `LIFECYCLE_STAGES` (-1 when recency is unknown), from behaviour only."""
    n = row_count(data, n)
    recency = numbers(data, "recency_days", n)
    tenure = numbers(data, "tenure_days", n)
    overdue = numbers(data, "overdue_ratio", n)
    t = thresholds
    with np.errstate(invalid="ignore"):
        lapsed = recency > t.churn_window_days
        lost = (recency > t.lost_recency_days) | (lapsed & (overdue >= t.lost_overdue_ratio))
        lapsing = overdue > t.lapsing_overdue_ratio
        new = tenure < t.new_customer_days
    stage = {name: code for code, name in enumerate(LIFECYCLE_STAGES)}
    codes = np.select(
        [np.isnan(recency), lost, lapsed, lapsing, new],
        [-1, stage["lost"], stage["lapsed"], stage["lapsing"], stage["new"]],
        default=stage["active"],
    )
    return codes.astype(np.int8)


def assign_segments(scored: pd.DataFrame, thresholds: SegmentThresholds) -> pd.DataFrame:
    """Place every customer in the value x risk grid and a lifecycle stage.

    Args:
        scored: one row per customer with the value and risk scores and the features
            `tenure_days`, `recency_days` and `overdue_ratio`.
        thresholds: the cut points (see `SegmentThresholds.fit`).

    Returns:
        A copy of `scored` with four categorical columns added (replaced if present):
        `value_tier` and `risk_tier` (low, mid, high), `segment` (see the module docstring)
        and `lifecycle_stage`. A `segment` column already in `scored` that is not a
        segment of this grid (the customer type of the customers table) is kept as
        `customer_type` unless that column exists.

    Raises:
        ValueError: a required column is missing.
    """
    index = scored.index
    added = {
        name: pd.Series(values, index=index)
        for name, values in segment_columns(scored, thresholds, len(scored)).items()
    }
    # Copy-on-write (pandas 3): shallow copies share the data until either side writes, so
    # `scored` is never touched and its columns are not copied. One concat for the new
    # columns keeps a wide feature frame from fragmenting.
    out = scored.copy(deep=False)
    for name in [c for c in added if c in out.columns]:
        out[name] = added.pop(name)
    if added:
        out = pd.concat([out, pd.DataFrame(added, index=index)], axis=1)
    return out


def segment_columns(scored: ColumnData, thresholds: SegmentThresholds, n: int) -> dict[str, Any]:
    """The columns `assign_segments` adds, as arrays (from a frame or a dict of columns).

    `customer_type`, when present, is the `segment` column of `scored` as it is.
    """
    required = (thresholds.value_column, thresholds.risk_column, *BEHAVIOUR_COLUMNS)
    missing = [c for c in required if c not in scored]
    if missing:
        raise ValueError(f"cannot assign segments: missing columns {missing}")
    value = _tier(numbers(scored, thresholds.value_column, n), thresholds.value_cuts)
    risk_score = numbers(scored, thresholds.risk_column, n)
    risk = _tier(risk_score, thresholds.risk_cuts)
    stage = lifecycle_codes(scored, thresholds, n)
    tenure = numbers(scored, "tenure_days", n)
    with np.errstate(invalid="ignore"):
        very_high_risk = risk_score > thresholds.lost_risk
        new = tenure < thresholds.new_customer_days
    lost = (stage == LIFECYCLE_STAGES.index("lost")) | ((value == 0) & very_high_risk)
    segment = np.select(
        [lost, new & (risk < 2)],
        [SEGMENTS.index("lost"), SEGMENTS.index("promising_new")],
        default=_GRID_CODES[value, risk],
    ).astype(np.int8)

    added: dict[str, Any] = {
        "value_tier": _categorical(value, TIERS),
        "risk_tier": _categorical(risk, TIERS),
        "segment": _categorical(segment, SEGMENTS),
        "lifecycle_stage": _categorical(stage, LIFECYCLE_STAGES),
    }
    if (
        "segment" in scored
        and "customer_type" not in scored
        and not _used_labels(scored["segment"]) <= set(SEGMENTS)
    ):
        added = {"customer_type": scored["segment"], **added}
    return added


def _used_labels(values: Any) -> set[Any]:
    """The distinct non-missing values of a column (per category for a categorical)."""
    coded = categorical(values)
    if coded is not None:
        return set(coded.categories[np.unique(coded.codes[coded.codes >= 0])])
    return set(pd.Series(values).dropna().unique())
