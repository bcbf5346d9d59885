"""Value x risk segments and lifecycle stages, with cut points taken from the score distribution.

The grid puts every scored customer in a value tier (their CLV against the CLV quantiles of a
reference population) and a risk tier (their churn probability against its quantiles). Cut
points are quantiles, never currency amounts, so the same settings work in any currency and
any market size; fit them once on the scores the model was validated on and store them with
the model (`SegmentThresholds.to_dict`), or refit on each night's scores.

The segment is the value x risk grid, constrained by the lifecycle stage, so the two columns
never contradict each other (a `vip` who is lapsing, a `hibernating` newcomer): the stage says
where a customer is in their life with us, from behaviour; the grid says what they are worth
and how likely they are to leave, from the models.

The grid (rows: value tier; columns: risk tier):

=========  ===========  ===============  ===========
value      low risk     mid risk         high risk
=========  ===========  ===============  ===========
high       vip          needs_attention  at_risk
mid        loyal        needs_attention  at_risk
low        loyal        hibernating      hibernating
=========  ===========  ===============  ===========

The segment per lifecycle stage (`STAGE_SEGMENTS` lists what each stage allows):

=========  ===================================================================================
lost       `lost`.
lapsed     past the churn window: `at_risk` with mid or high value (worth winning back); with
           low value `lost` at very high risk (above the `lost_risk_quantile` cut: not worth a
           personal effort any more), else `hibernating`.
lapsing    overdue against their own rhythm: `at_risk` with mid or high value and high risk,
           `needs_attention` with mid or high value otherwise, `hibernating` with low value.
           Never `vip` or `loyal`: those stay in rhythm.
new        `promising_new`, or `at_risk` with mid or high value and high risk: too little
           history to call a newcomer loyal, hibernating or lost.
active     the grid.
(none)     no order (e.g. only refunds): the grid, or `lost` with low value and very high risk.
=========  ===================================================================================

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
BEHAVIOUR_COLUMNS = ("tenure_days", "recency_days", "overdue_ratio")

# Rows: value tier low, mid, high; columns: risk tier low, mid, high.
_GRID = (
    ("loyal", "hibernating", "hibernating"),
    ("loyal", "needs_attention", "at_risk"),
    ("vip", "needs_attention", "at_risk"),
)
_GRID_CODES = np.array([[SEGMENTS.index(s) for s in row] for row in _GRID], dtype=np.int8)
STAGE_SEGMENTS: dict[str, tuple[str, ...]] = {
    "new": ("promising_new", "at_risk"),
    "active": ("vip", "loyal", "needs_attention", "at_risk", "hibernating"),
    "lapsing": ("needs_attention", "at_risk", "hibernating"),
    "lapsed": ("at_risk", "hibernating", "lost"),
    "lost": ("lost",),
}
"""The segments each lifecycle stage allows: `assign_segments` never leaves this table."""
_SEGMENT_CODE = {name: np.int8(i) for i, name in enumerate(SEGMENTS)}
_STAGE_CODE = {name: i for i, name in enumerate(LIFECYCLE_STAGES)}


def _constrained_segments(
    grid: np.ndarray,
    value: np.ndarray,
    risk: np.ndarray,
    very_high_risk: np.ndarray,
    stage: np.ndarray,
) -> np.ndarray:
    """Segment codes: the grid's segment, constrained by the lifecycle stage (module docstring)."""
    code, stage_code = _SEGMENT_CODE, _STAGE_CODE
    valuable = value > 0
    high_risk = risk == 2
    lapsed = np.where(
        valuable, code["at_risk"], np.where(very_high_risk, code["lost"], code["hibernating"])
    )
    lapsing = np.where(
        valuable,
        np.where(high_risk, code["at_risk"], code["needs_attention"]),
        code["hibernating"],
    )
    new = np.where(valuable & high_risk, code["at_risk"], code["promising_new"])
    no_stage = np.where(~valuable & very_high_risk, code["lost"], grid)
    return np.select(
        [
            stage == stage_code["lost"],
            stage == stage_code["lapsed"],
            stage == stage_code["lapsing"],
            stage == stage_code["new"],
            stage == stage_code["active"],
        ],
        [code["lost"], lapsed, lapsing, new, grid],
        default=no_stage,
    ).astype(np.int8)


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
    with np.errstate(invalid="ignore"):
        very_high_risk = risk_score > thresholds.lost_risk
    segment = _constrained_segments(_GRID_CODES[value, risk], value, risk, very_high_risk, stage)

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
