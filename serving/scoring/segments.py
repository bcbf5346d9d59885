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

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from features.columns import ColumnData, categorical, numbers, row_count

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


def _pair(values: Any, name: str) -> tuple[float, float]:
    pair = tuple(float(v) for v in values)
    if len(pair) != 2 or not all(math.isfinite(v) for v in pair) or pair[0] > pair[1]:
        raise ValueError(f"{name} must be two finite ascending numbers, got {values!r}")
    return pair[0], pair[1]


def _check_quantiles(values: tuple[float, ...], name: str) -> None:
    if not all(0.0 < q < 1.0 for q in values) or list(values) != sorted(set(values)):
        raise ValueError(f"{name} must be strictly ascending numbers in (0, 1), got {values!r}")


@dataclass(frozen=True)
class SegmentThresholds:
    """Cut points of the value x risk grid and the behavioural limits of the lifecycle.

    Attributes:
        value_cuts: `value_column` above the first is mid value, above the second high value.
        risk_cuts: `risk_column` above the first is mid risk, above the second high risk.
        lost_risk: `risk_column` above this with low value is the `lost` segment.
        value_quantiles: the quantiles `value_cuts` were taken at (kept for the record).
        risk_quantiles: the quantiles `risk_cuts` were taken at.
        lost_risk_quantile: the quantile `lost_risk` was taken at.
        value_column: the score ranking value (margin over the horizon by default).
        risk_column: the score ranking risk.
        new_customer_days: tenure under which a customer is new.
        churn_window_days: days without a purchase after which a customer has lapsed.
        lapsing_overdue_ratio: recency over the usual gap above which a customer is lapsing.
        lost_overdue_ratio: the same ratio from which a lapsed customer is lost.
        lost_recency_days: days without a purchase after which a customer is lost anyway.
    """

    value_cuts: tuple[float, float]
    risk_cuts: tuple[float, float]
    lost_risk: float
    value_quantiles: tuple[float, float] = (0.5, 0.8)
    risk_quantiles: tuple[float, float] = (0.5, 0.8)
    lost_risk_quantile: float = 0.95
    value_column: str = "clv"
    risk_column: str = "churn_probability"
    new_customer_days: float = 90.0
    churn_window_days: float = 90.0
    lapsing_overdue_ratio: float = 1.5
    lost_overdue_ratio: float = 4.0
    lost_recency_days: float = 365.0

    def __post_init__(self) -> None:
        """Normalise sequences to tuples and reject inconsistent settings."""
        object.__setattr__(self, "value_cuts", _pair(self.value_cuts, "value_cuts"))
        object.__setattr__(self, "risk_cuts", _pair(self.risk_cuts, "risk_cuts"))
        object.__setattr__(self, "value_quantiles", _pair(self.value_quantiles, "value_quantiles"))
        object.__setattr__(self, "risk_quantiles", _pair(self.risk_quantiles, "risk_quantiles"))
        _check_quantiles(self.value_quantiles, "value_quantiles")
        _check_quantiles(self.risk_quantiles, "risk_quantiles")
        _check_quantiles((self.lost_risk_quantile,), "lost_risk_quantile")
        if not math.isfinite(self.lost_risk):
            raise ValueError(f"lost_risk must be finite, got {self.lost_risk!r}")
        for name in (
            "new_customer_days",
            "churn_window_days",
            "lapsing_overdue_ratio",
            "lost_overdue_ratio",
            "lost_recency_days",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.lost_overdue_ratio < self.lapsing_overdue_ratio:
            raise ValueError("lost_overdue_ratio must not be below lapsing_overdue_ratio")
        if self.lost_recency_days < self.churn_window_days:
            raise ValueError("lost_recency_days must not be below churn_window_days")

    @classmethod
    def fit(
        cls,
        scores: pd.DataFrame,
        value_quantiles: tuple[float, float] = (0.5, 0.8),
        risk_quantiles: tuple[float, float] = (0.5, 0.8),
        lost_risk_quantile: float = 0.95,
        **settings: Any,
    ) -> SegmentThresholds:
        """Cut points at quantiles of a reference population's scores.

        Args:
            scores: one row per customer with the value and risk columns.
            value_quantiles: quantiles of the value column separating low/mid and mid/high.
            risk_quantiles: quantiles of the risk column separating low/mid and mid/high.
            lost_risk_quantile: quantile of the risk column above which low value is lost.
            **settings: any other field (`value_column`, `new_customer_days`, ...).

        Returns:
            The thresholds.

        Raises:
            ValueError: a quantile outside (0, 1), a missing column, or no finite score.
        """
        value_column = settings.get("value_column", cls.value_column)
        risk_column = settings.get("risk_column", cls.risk_column)
        value_q = _pair(value_quantiles, "value_quantiles")
        risk_q = _pair(risk_quantiles, "risk_quantiles")
        _check_quantiles(value_q, "value_quantiles")
        _check_quantiles(risk_q, "risk_quantiles")
        _check_quantiles((float(lost_risk_quantile),), "lost_risk_quantile")

        def finite(column: str) -> np.ndarray:
            if column not in scores.columns:
                raise ValueError(f"scores have no column {column!r} to fit segments on")
            values = scores[column].to_numpy(dtype=np.float64, na_value=np.nan)
            values = values[np.isfinite(values)]
            if values.size == 0:
                raise ValueError(f"scores have no finite {column!r} to fit segments on")
            return values

        value, risk = finite(value_column), finite(risk_column)
        value_cuts = np.quantile(value, value_q)
        risk_cuts = np.quantile(risk, [*risk_q, float(lost_risk_quantile)])
        return cls(
            value_cuts=(float(value_cuts[0]), float(value_cuts[1])),
            risk_cuts=(float(risk_cuts[0]), float(risk_cuts[1])),
            lost_risk=float(risk_cuts[2]),
            value_quantiles=value_q,
            risk_quantiles=risk_q,
            lost_risk_quantile=float(lost_risk_quantile),
            **settings,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready values (tuples as lists), for storing with the model."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentThresholds:
        """The inverse of `to_dict`.

        Raises:
            ValueError: an unknown or missing key, or an inconsistent value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown segment threshold keys: {unknown}")
        missing = sorted({"value_cuts", "risk_cuts", "lost_risk"} - set(data))
        if missing:
            raise ValueError(f"missing segment threshold keys: {missing}")
        return cls(**data)


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


def reference_population(scored: pd.DataFrame, churn_window_days: float) -> pd.DataFrame:
    """The customers whose scores set the cut points: those who bought within the churn window.

    Long-lapsed customers pile up at the top of the risk scale; cut points taken over them
    would leave no room for "at risk" among the customers still worth keeping.
    """
    active = scored[scored["recency_days"] <= churn_window_days]
    return active if len(active) >= 20 else scored
