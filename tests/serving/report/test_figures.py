"""The dashboard's figures on hand-made scores: headline, NPS, shares, segment value, VIPs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from serving.report.figures import (
    equity_share,
    headline,
    nps,
    repeat_purchase_rate,
    segment_value,
    top_share,
    vips_at_risk,
)
from serving.runs import summarise
from tests.serving.report.factories import scores_frame


def test_headline_equity_is_the_sum_of_clv_and_value_at_risk_the_sum_of_risk_x_clv() -> None:
    scores = scores_frame()
    before = scores.copy()
    figures = headline(scores, summarise(scores, {}), market_value=4000.0)
    assert figures["customers"] == 4
    assert figures["customer_equity"] == pytest.approx(1000.0)
    assert figures["value_at_risk"] == pytest.approx(300.0)
    assert figures["value_at_risk_share_all"] == pytest.approx(0.3)
    assert figures["mean_clv"] == pytest.approx(250.0)
    assert figures["median_clv"] == pytest.approx(250.0)
    assert figures["customer_equity_share"] == pytest.approx(0.25)
    assert figures["with_action"] == 2
    assert figures["nps"] is None and figures["repeat_purchase_rate"] is None
    assert_frame_equal(scores, before)


def test_headline_rates_are_over_the_decision_population_with_everyone_beside() -> None:
    """The lapsed customer (c) counts in the amounts, not in the churn and value-at-risk rates."""
    scores = scores_frame()
    summary = summarise(scores, {})
    assert summary["decision_population"] == {
        "rule": "bought within the churn window before the date",
        "customers": 3,
        "mean_churn_probability": pytest.approx(0.25),
        "customer_equity": pytest.approx(700.0),
        "value_at_risk": pytest.approx(150.0),
    }
    figures = headline(scores, summary)
    assert figures["active_customers"] == 3
    assert figures["expected_churn_rate"] == pytest.approx(0.75 / 3)
    assert figures["expected_churn_rate_all"] == pytest.approx(1.25 / 4)
    assert figures["value_at_risk_active"] == pytest.approx(150.0)
    assert figures["value_at_risk_share"] == pytest.approx(150.0 / 700.0)
    assert figures["value_at_risk_share_all"] == pytest.approx(0.3)
    assert figures["value_at_risk"] == pytest.approx(300.0)  # an amount: every customer


def test_scores_without_the_population_mark_have_no_active_rates() -> None:
    scores = scores_frame().drop(columns=["active_customer"])
    summary = summarise(scores, {})
    assert summary["decision_population"] is None
    figures = headline(scores, summary)
    assert figures["expected_churn_rate"] is None and figures["active_customers"] is None
    assert figures["expected_churn_rate_all"] == pytest.approx(1.25 / 4)


def test_headline_survey_and_support_figures() -> None:
    scores = scores_frame(
        nps_last=[10.0, 3.0, 8.0, 0.0],
        days_since_nps=[5.0, 10.0, 100.0, 400.0],  # d's answer is too old to count
        csat_last=[5.0, 2.0, np.nan, 4.0],
        days_since_csat=[1.0, 2.0, np.nan, 3.0],
        n_orders=[1.0, 3.0, 0.0, 2.0],
        support_ticket_90d=[1.0, 2.0, 0.0, np.nan],
        unresolved_tickets=[0.0, 1.0, 2.0, 0.0],
        complaint_90d=[0.0, 1.0, 0.0, 0.0],
    )
    figures = headline(scores, summarise(scores, {}))
    assert figures["nps"] == pytest.approx(100 * (1 / 3 - 1 / 3))
    assert figures["nps_answers"] == 3
    assert figures["detractors_to_follow_up"] == 1  # b: 3, ten days ago
    assert figures["csat_satisfied"] == pytest.approx(2 / 3)
    assert figures["csat_mean"] == pytest.approx(11 / 3)
    assert figures["repeat_purchase_rate"] == pytest.approx(2 / 3)
    assert figures["support_tickets_90d"] == 3
    assert figures["unresolved_tickets"] == 3
    assert figures["customers_with_unresolved"] == 2
    assert figures["complaints_90d"] == 1


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([9, 10, 7, 0], 25.0),
        ([7, 8], 0.0),
        ([0, 6, 6, 9], -50.0),
        ([10], 100.0),
        ([np.nan, 9.0], 100.0),
        ([], None),
    ],
)
def test_nps(answers: list[float], expected: float | None) -> None:
    result = nps(pd.Series(answers, dtype="float64"))
    assert result == (None if expected is None else pytest.approx(expected))


def test_repeat_purchase_rate_counts_buyers_only() -> None:
    assert repeat_purchase_rate(pd.Series([0.0, 1.0, 2.0, 5.0])) == pytest.approx(2 / 3)
    assert repeat_purchase_rate(pd.Series([0.0])) is None


@pytest.mark.parametrize(
    ("equity", "market", "expected"), [(500.0, 2000.0, 0.25), (5.0, None, None), (5.0, 0.0, None)]
)
def test_equity_share(equity: float, market: float | None, expected: float | None) -> None:
    assert equity_share(equity, market) == expected


def test_top_share() -> None:
    clv = pd.Series([10.0, 0.0, 30.0, 60.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert top_share(clv, 0.1) == pytest.approx(0.6)
    assert top_share(clv, 0.2) == pytest.approx(0.9)
    assert top_share(pd.Series([0.0, 0.0]), 0.2) is None


def test_segment_value_hand_computed() -> None:
    scores = scores_frame(customer_type=["student", "parent", None, "student"])
    before = scores.copy()
    table = segment_value(scores, "customer_type")
    expected = pd.DataFrame(
        {
            "group": ["parent", "student", "unknown"],
            "customers": [1, 2, 1],
            "customer_share": [0.25, 0.5, 0.25],
            "total_clv": [400.0, 300.0, 300.0],
            "mean_clv": [400.0, 150.0, 300.0],
            "equity_share": [0.4, 0.3, 0.3],
            "value_at_risk": [100.0, 50.0, 150.0],
            "expected_churn_rate": [0.25, 0.25, 0.5],
        }
    )
    assert_frame_equal(table, expected, check_dtype=False)
    assert_frame_equal(scores, before)


def test_segment_value_adds_nps_per_group() -> None:
    scores = scores_frame(nps_last=[10.0, 0.0, np.nan, 9.0])
    table = segment_value(scores, "segment").set_index("group")
    assert table.loc["loyal", "nps"] == 100.0
    assert table.loc["vip", "nps"] == -100.0
    assert table.loc["at_risk", "nps"] == 100.0  # a's 10; c never answered


def test_vips_at_risk_are_high_value_by_value_at_risk() -> None:
    top = vips_at_risk(scores_frame(), n=5)
    assert top["customer_id"].tolist() == ["c", "b"]  # 150 then 100 at risk; a, d are mid value
    assert {"reasons", "recommended_action", "clv", "churn_probability"} <= set(top.columns)
    assert vips_at_risk(scores_frame(), n=1)["customer_id"].tolist() == ["c"]


def test_vips_at_risk_leave_out_the_low_risk_tier() -> None:
    scores = scores_frame(risk_tier=["high", "low", "mid", "low"])
    assert vips_at_risk(scores)["customer_id"].tolist() == ["c"]


def test_vips_without_value_tier_are_the_top_fifth_by_clv() -> None:
    scores = scores_frame().drop(columns=["value_tier"])
    assert vips_at_risk(scores)["customer_id"].tolist() == ["b"]
