"""Segment cut points learned at training time: fitting, settings, storage with the model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.serving.scoring.test_segments import _scored
from training.thresholds import SegmentThresholds

NAN = float("nan")


def test_fit_takes_quantiles_of_the_scores() -> None:
    scores = pd.DataFrame({"clv": np.arange(10.0), "churn_probability": np.linspace(0.0, 0.9, 10)})
    fitted = SegmentThresholds.fit(scores)
    assert fitted.value_cuts == pytest.approx((4.5, 7.2))
    assert fitted.risk_cuts == pytest.approx((0.45, 0.72))
    assert fitted.lost_risk == pytest.approx(0.855)
    assert fitted.value_quantiles == (0.5, 0.8)


def test_fit_settings_pass_through() -> None:
    scores = pd.DataFrame({"margin": [1.0, 2.0, 3.0], "churn_probability": [0.1, 0.2, 0.3]})
    fitted = SegmentThresholds.fit(
        scores, value_quantiles=(0.25, 0.75), value_column="margin", new_customer_days=30
    )
    assert fitted.value_cuts == (1.5, 2.5)
    assert fitted.value_column == "margin"
    assert fitted.new_customer_days == 30


def test_thresholds_round_trip_through_json() -> None:
    fitted = SegmentThresholds.fit(_scored(), risk_quantiles=(0.6, 0.9), lost_recency_days=300)
    stored = json.loads(json.dumps(fitted.to_dict()))
    assert stored["value_cuts"] == list(fitted.value_cuts)
    assert SegmentThresholds.from_dict(stored) == fitted


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"value_cuts": [1, 2], "risk_cuts": [0.1, 0.2], "lost_risk": 0.9, "x": 1}, "unknown"),
        ({"value_cuts": [1, 2], "risk_cuts": [0.1, 0.2]}, "missing"),
        ({"value_cuts": [2, 1], "risk_cuts": [0.1, 0.2], "lost_risk": 0.9}, "value_cuts"),
        (
            {
                "value_cuts": [1, 2],
                "risk_cuts": [0.1, 0.2],
                "lost_risk": 0.9,
                "new_customer_days": 0,
            },
            "new_customer_days",
        ),
        (
            {
                "value_cuts": [1, 2],
                "risk_cuts": [0.1, 0.2],
                "lost_risk": 0.9,
                "lost_overdue_ratio": 1,
            },
            "lost_overdue_ratio",
        ),
    ],
)
def test_bad_thresholds_are_refused(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentThresholds.from_dict(data)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"value_quantiles": (0.8, 0.5)}, "value_quantiles"),
        ({"risk_quantiles": (0.0, 0.5)}, "risk_quantiles"),
        ({"lost_risk_quantile": 1.0}, "lost_risk_quantile"),
        ({"value_column": "nope"}, "nope"),
    ],
)
def test_fit_refuses_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentThresholds.fit(_scored(), **kwargs)


def test_fit_needs_finite_scores() -> None:
    scores = pd.DataFrame({"clv": [NAN, NAN], "churn_probability": [0.1, 0.2]})
    with pytest.raises(ValueError, match="no finite 'clv'"):
        SegmentThresholds.fit(scores)
