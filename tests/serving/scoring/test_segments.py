"""Value x risk segments and lifecycle stages on hand-made customers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from serving.scoring.segments import (
    LIFECYCLE_STAGES,
    SEGMENTS,
    STAGE_SEGMENTS,
    TIERS,
    assign_segments,
)
from training.thresholds import SegmentThresholds

NAN = math.nan
# Hand-set cuts: value low <= 100 < mid <= 500 < high; risk low <= 0.3 < mid <= 0.6 < high;
# low value above 0.9 risk is lost.
CUTS = SegmentThresholds(value_cuts=(100.0, 500.0), risk_cuts=(0.3, 0.6), lost_risk=0.9)

# customer_id, clv, churn_probability, tenure_days, recency_days, overdue_ratio,
# expected value_tier, risk_tier, segment, lifecycle_stage
CASES = [
    ("vip", 800.0, 0.10, 400.0, 10.0, 0.5, "high", "low", "vip", "active"),
    ("loyal_mid", 200.0, 0.20, 400.0, 10.0, 0.5, "mid", "low", "loyal", "active"),
    ("loyal_low", 50.0, 0.20, 400.0, 10.0, 0.5, "low", "low", "loyal", "active"),
    ("attention_high", 800.0, 0.50, 400.0, 20.0, 1.0, "high", "mid", "needs_attention", "active"),
    ("attention_mid", 200.0, 0.50, 400.0, 20.0, 1.0, "mid", "mid", "needs_attention", "active"),
    ("at_risk_high", 800.0, 0.70, 400.0, 60.0, 2.0, "high", "high", "at_risk", "lapsing"),
    ("at_risk_mid", 200.0, 0.70, 400.0, 60.0, 1.5, "mid", "high", "at_risk", "active"),
    ("hibernating", 50.0, 0.50, 400.0, 100.0, 2.0, "low", "mid", "hibernating", "lapsed"),
    ("hibernating_hi", 50.0, 0.80, 400.0, 80.0, 2.0, "low", "high", "hibernating", "lapsing"),
    # Active customers are not lost, however high the risk; lapsed ones of low value can be.
    ("very_high_risk", 50.0, 0.95, 400.0, 30.0, 1.0, "low", "high", "hibernating", "active"),
    ("lost_by_risk", 50.0, 0.95, 400.0, 120.0, 1.0, "low", "high", "lost", "lapsed"),
    ("lost_by_recency", 800.0, 0.70, 900.0, 400.0, 2.0, "high", "high", "lost", "lost"),
    ("lost_by_rhythm", 200.0, 0.50, 400.0, 100.0, 5.0, "mid", "mid", "lost", "lost"),
    ("new", 50.0, 0.40, 30.0, 5.0, NAN, "low", "mid", "promising_new", "new"),
    ("new_high_risk", 200.0, 0.70, 30.0, 25.0, NAN, "mid", "high", "at_risk", "new"),
    ("new_low_high_risk", 50.0, 0.80, 30.0, 5.0, NAN, "low", "high", "promising_new", "new"),
    ("new_lapsing", 800.0, 0.10, 80.0, 70.0, 3.5, "high", "low", "needs_attention", "lapsing"),
    ("vip_lapsing", 800.0, 0.10, 400.0, 50.0, 2.0, "high", "low", "needs_attention", "lapsing"),
    ("loyal_lapsing", 50.0, 0.10, 400.0, 50.0, 2.0, "low", "low", "hibernating", "lapsing"),
    ("loyal_lapsed", 200.0, 0.20, 400.0, 100.0, 2.0, "mid", "low", "at_risk", "lapsed"),
    ("low_lapsed", 50.0, 0.20, 400.0, 100.0, 2.0, "low", "low", "hibernating", "lapsed"),
    ("at_the_cut", 100.0, 0.30, 400.0, 10.0, 0.5, "low", "low", "loyal", "active"),
    ("refunds_only", 800.0, 0.10, NAN, NAN, NAN, "high", "low", "vip", None),
]


def _scored(cases: list[tuple] = CASES) -> pd.DataFrame:
    columns = list(zip(*cases, strict=True))
    return pd.DataFrame(
        {
            "customer_id": pd.array(columns[0], dtype="str"),
            "clv": np.array(columns[1]),
            "churn_probability": np.array(columns[2]),
            "tenure_days": np.array(columns[3]),
            "recency_days": np.array(columns[4]),
            "overdue_ratio": np.array(columns[5]),
        }
    )


def _categorical(values: tuple, categories: tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical(list(values), categories=list(categories))


def test_every_segment_and_stage_by_hand() -> None:
    scored = _scored()
    columns = list(zip(*CASES, strict=True))
    expected = scored.assign(
        value_tier=_categorical(columns[6], TIERS),
        risk_tier=_categorical(columns[7], TIERS),
        segment=_categorical(columns[8], SEGMENTS),
        lifecycle_stage=_categorical(columns[9], LIFECYCLE_STAGES),
    )
    pd.testing.assert_frame_equal(assign_segments(scored, CUTS), expected)


def test_every_segment_is_reachable() -> None:
    assert set(assign_segments(_scored(), CUTS)["segment"]) == set(SEGMENTS)


def test_the_segment_never_contradicts_the_lifecycle_stage() -> None:
    """Every (stage, segment) pair is one `STAGE_SEGMENTS` allows, whatever the scores."""
    rng = np.random.default_rng(11)
    n = 20_000
    tenure = rng.uniform(1.0, 1500.0, n)
    scored = pd.DataFrame(
        {
            "customer_id": pd.array([f"c{i}" for i in range(n)], dtype="str"),
            "clv": rng.lognormal(3.0, 1.5, n),
            "churn_probability": rng.uniform(0.0, 1.0, n),
            "tenure_days": tenure,
            "recency_days": tenure * rng.uniform(0.0, 1.0, n),
            "overdue_ratio": rng.exponential(1.5, n),
        }
    )
    out = assign_segments(scored, SegmentThresholds.fit(scored))
    pairs = out.groupby(["lifecycle_stage", "segment"], observed=True).size()
    outside = [pair for pair in pairs.index if pair[1] not in STAGE_SEGMENTS[pair[0]]]
    assert outside == []
    # Every pair the table allows happens: the table is no wider than the rule.
    allowed = {(stage, segment) for stage, kept in STAGE_SEGMENTS.items() for segment in kept}
    assert set(pairs.index) == allowed


def test_input_is_not_mutated() -> None:
    scored = _scored()
    before = scored.copy(deep=True)
    out = assign_segments(scored, CUTS)
    out.loc[0, "clv"] = -1.0
    pd.testing.assert_frame_equal(scored, before)


def test_fit_on_the_population_gives_the_expected_shares() -> None:
    rng = np.random.default_rng(7)
    n = 10_000
    scored = pd.DataFrame(
        {
            "customer_id": pd.array([f"c{i}" for i in range(n)], dtype="str"),
            "clv": rng.lognormal(3.0, 1.0, n),
            "churn_probability": rng.uniform(0.0, 1.0, n),
            "tenure_days": np.full(n, 400.0),
            "recency_days": np.full(n, 10.0),
            "overdue_ratio": np.full(n, 0.5),
        }
    )
    out = assign_segments(scored, SegmentThresholds.fit(scored))
    value_share = out["value_tier"].value_counts(normalize=True)
    risk_share = out["risk_tier"].value_counts(normalize=True)
    assert value_share.to_dict() == pytest.approx({"low": 0.5, "mid": 0.3, "high": 0.2}, abs=1e-3)
    assert risk_share.to_dict() == pytest.approx({"low": 0.5, "mid": 0.3, "high": 0.2}, abs=1e-3)


def test_segments_do_not_depend_on_the_currency() -> None:
    rng = np.random.default_rng(3)
    n = 2_000
    scored = pd.DataFrame(
        {
            "customer_id": pd.array([f"c{i}" for i in range(n)], dtype="str"),
            "clv": np.round(rng.lognormal(3.0, 1.5, n), 2),
            "predicted_spend": np.round(rng.lognormal(4.0, 1.5, n), 2),
            "churn_probability": rng.uniform(0.0, 1.0, n),
            "tenure_days": rng.uniform(1.0, 1000.0, n),
            "recency_days": rng.uniform(0.0, 500.0, n),
            "overdue_ratio": rng.uniform(0.0, 8.0, n),
        }
    )
    scored.loc[:200, "clv"] = 0.0  # ties at the lowest value
    rich = scored.assign(clv=scored["clv"] * 1000, predicted_spend=scored["predicted_spend"] * 1000)
    plain = assign_segments(scored, SegmentThresholds.fit(scored))
    scaled = assign_segments(rich, SegmentThresholds.fit(rich))
    for column in ("value_tier", "risk_tier", "segment", "lifecycle_stage"):
        pd.testing.assert_series_equal(plain[column], scaled[column])
    assert plain["segment"].nunique() == len(SEGMENTS)


def test_ties_at_a_cut_stay_in_the_lower_tier() -> None:
    scores = pd.DataFrame(
        {"clv": [0.0] * 6 + [5.0, 6.0, 7.0, 8.0], "churn_probability": np.linspace(0, 1, 10)}
    )
    fitted = SegmentThresholds.fit(scores)
    assert fitted.value_cuts[0] == 0.0
    scored = scores.assign(tenure_days=400.0, recency_days=10.0, overdue_ratio=0.5)
    tiers = assign_segments(scored, fitted)["value_tier"]
    assert (tiers[:6] == "low").all()


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match=r"\['overdue_ratio'\]"):
        assign_segments(_scored().drop(columns="overdue_ratio"), CUTS)


def test_the_customer_type_column_is_kept() -> None:
    scored = _scored().assign(segment=pd.Categorical(["student"] * len(CASES)))
    out = assign_segments(scored, CUTS)
    assert (out["customer_type"] == "student").all()
    assert set(out["segment"]) <= set(SEGMENTS)
    again = assign_segments(out, CUTS)
    pd.testing.assert_frame_equal(again, out)


def test_index_is_kept() -> None:
    scored = _scored().set_axis(np.arange(100, 100 + len(CASES)))
    out = assign_segments(scored, CUTS)
    assert out.index.equals(scored.index)
    assert out.loc[100, "segment"] == "vip"
