"""Segment cut points, learned at training time from the validation scores and kept with the model.

Cut points are quantiles of a reference population's scores, never currency amounts, so the
same settings work in any currency and market size; `serving.scoring.segments` assigns the
segments with them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from features.population import decision_population

# Fewer active customers than this cannot place quantile cut points: all customers are used.
MIN_REFERENCE_CUSTOMERS = 20


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


def reference_population(
    scored: pd.DataFrame, churn_window_days: float, definition: str = "inactivity"
) -> pd.DataFrame:
    """The customers whose scores set the cut points: the decision population, if big enough.

    Long-lapsed customers pile up at the top of the risk scale; cut points taken over them
    would leave no room for "at risk" among the customers still worth keeping.
    """
    active = decision_population(scored, churn_window_days, definition)
    return active if len(active) >= MIN_REFERENCE_CUSTOMERS else scored
