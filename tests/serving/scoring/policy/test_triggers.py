"""The triggers: their limits, missing data, the segment columns, and the columns each one reads."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from serving.scoring.policy.apply import recommend
from serving.scoring.policy.schema import Policy
from serving.scoring.policy.triggers import TRIGGERS, ScoredColumns
from serving.scoring.segments import SEGMENTS
from tests.serving.scoring.policy.factories import (
    AT_RISK,
    DETRACTOR,
    LOYAL,
    VIEWED,
    VIP_AT_RISK,
    customers,
    one,
)


@pytest.mark.parametrize(
    ("override", "fires"),
    [
        ({"nps_last": 6.0, "days_since_nps": 1.0}, True),
        ({"nps_last": 7.0, "days_since_nps": 1.0}, False),
        ({"nps_last": 0.0, "days_since_nps": 90.0}, True),
        ({"nps_last": 0.0, "days_since_nps": 200.0}, False),  # an old answer is no alarm now
    ],
)
def test_detractor_limits(policy: Policy, override: dict[str, float], fires: bool) -> None:
    row = one(policy, **override)
    assert (row["recommended_action"] == "service_follow_up") is fires


def test_missing_feature_columns_never_fire(policy: Policy) -> None:
    frame = customers(DETRACTOR).drop(columns=["nps_last", "days_since_nps"])
    row = recommend(frame, policy).iloc[0]
    assert row["recommended_action"] == "no_action"


def test_segment_columns_are_required(policy: Policy) -> None:
    with pytest.raises(ValueError, match="assign_segments"):
        recommend(customers({}).drop(columns="risk_tier"), policy)
    customer_type = customers({}).assign(segment="student")
    with pytest.raises(ValueError, match="student"):
        recommend(customer_type, policy)


def test_segment_columns_as_categoricals_read_as_their_text(policy: Policy) -> None:
    frame = customers(VIP_AT_RISK, DETRACTOR, {**VIEWED, **LOYAL}, AT_RISK, {})
    coded = frame.astype({"value_tier": "category", "risk_tier": "category"})
    # All the segments as levels, as assign_segments makes them: most of them unused here.
    coded["segment"] = pd.Categorical(frame["segment"], categories=list(SEGMENTS))
    pd.testing.assert_frame_equal(recommend(coded, policy), recommend(frame, policy))
    customer_type = coded.assign(segment=pd.Categorical(["student"] * len(coded)))
    with pytest.raises(ValueError, match="student"):
        recommend(customer_type, policy)


class _Recording(dict[str, Any]):
    """Columns that remember which of them were read."""

    def __init__(self, frame: pd.DataFrame) -> None:
        super().__init__({name: frame[name] for name in frame.columns})
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        self.read.add(name)
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self.read.add(str(name))
        return super().__contains__(name)


@pytest.mark.parametrize("name", list(TRIGGERS))
def test_each_trigger_reads_only_the_columns_it_declares(policy: Policy, name: str) -> None:
    """`Policy.columns` (what a caller must provide) is built from the declared columns."""
    frame = customers(VIP_AT_RISK, DETRACTOR, {**VIEWED, **LOYAL}, AT_RISK, {})
    columns = _Recording(frame)
    fired = TRIGGERS[name].fire(ScoredColumns(columns, len(frame)), policy.triggers[name])
    assert fired.dtype == bool
    assert fired.shape == (len(frame),)
    assert columns.read == set(TRIGGERS[name].columns)


def test_a_null_limit_lets_missing_data_pass(policy: Policy) -> None:
    frame = customers({"recency_days": math.nan, "overdue_ratio": 2.0})
    params = {**policy.triggers["overdue"], "max_recency_days": None}
    assert TRIGGERS["overdue"].fire(ScoredColumns(frame), params).tolist() == [True]
    limited = {**params, "max_recency_days": 365.0}
    assert TRIGGERS["overdue"].fire(ScoredColumns(frame), limited).tolist() == [False]


def test_columns_are_read_once_and_read_only() -> None:
    frame = customers({}, {"recency_days": 3.0})
    columns = ScoredColumns(frame)
    recency = columns.number("recency_days")
    assert columns.number("recency_days") is recency
    np.testing.assert_array_equal(recency, [10.0, 3.0])
    with pytest.raises(ValueError, match="read-only"):
        recency[0] = 1.0
    assert np.isnan(columns.number("no_such_column")).all()
