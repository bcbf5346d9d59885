"""The subscription rules: notice, failed payment, trial ending, renewal due; silent on retail."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.synthetic_subscriptions import generate_subscription_tables
from serving.campaign.plan import plan_campaign
from serving.scoring.policy.apply import recommend
from serving.scoring.policy.schema import Policy
from serving.scoring.policy.triggers import TRIGGERS
from serving.scoring.segments import assign_segments
from tests.serving.scoring.policy.factories import (
    AT_RISK,
    DETRACTOR,
    LOYAL,
    NAN,
    OVERDUE,
    QUIET,
    STEP_UP,
    TICKET,
    VIEWED,
    VIP_AT_RISK,
    customers,
    one,
)
from training.thresholds import SegmentThresholds

# A subscriber for whom no subscription trigger fires: an annual plan renewing in 200 days,
# no notice, no trial, no failed payment.
SUBSCRIBER: dict[str, Any] = {
    "holds_term": 1.0,
    "mrr": 250.0,
    "days_to_renewal": 200.0,
    "billing_period_months": 12.0,
    "notice_given": 0.0,
    "days_to_noticed_end": NAN,
    "on_trial": 0.0,
    "trial_days_left": NAN,
    "days_since_payment_failed": NAN,
    "days_since_payment_late": NAN,
    "payment_failed_90d": 0.0,
    "value_at_risk": 120.0,
}
NOTICE = {"notice_given": 1.0, "days_to_noticed_end": 20.0, "days_to_renewal": 20.0}
FAILED = {"days_since_payment_failed": 4.0, "payment_failed_90d": 2.0, "recency_days": 40.0}
TRIAL = {
    "on_trial": 1.0,
    "trial_days_left": 5.0,
    "days_to_renewal": 5.0,
    "billing_period_months": 0.5,
}
RENEWAL = {"days_to_renewal": 21.0}
RULES = {
    "notice_before_end": (NOTICE, "downgrade_or_pause"),
    "payment_failed": (FAILED, "payment_recovery"),
    "trial_ending": (TRIAL, "trial_nudge"),
    "renewal_due": (RENEWAL, "renewal_outreach"),
}


def subscriber(policy: Policy, *overrides: dict[str, Any]) -> dict[str, Any]:
    """The recommendation for a subscriber with the overrides applied, later ones winning."""
    merged: dict[str, Any] = {**SUBSCRIBER}
    for override in overrides:
        merged.update(override)
    return one(policy, **merged)


def test_a_quiet_subscriber_gets_no_action(policy: Policy) -> None:
    row = subscriber(policy)
    assert (row["recommended_action"], row["triggers"]) == ("no_action", "")


@pytest.mark.parametrize("trigger", list(RULES))
def test_each_rule_fires_on_its_own_row(policy: Policy, trigger: str) -> None:
    override, action = RULES[trigger]
    row = subscriber(policy, override)
    assert row["recommended_action"] == action
    assert row["triggers"] == trigger
    assert row["superseded_triggers"] == ""
    assert not policy.actions[action].discount
    assert "n/a" not in row["action_reason"]


@pytest.mark.parametrize("trigger", list(RULES))
def test_without_the_subscription_columns_no_rule_fires(policy: Policy, trigger: str) -> None:
    """Retail data has none of these columns: the rule stays silent, the customer is quiet."""
    override, _ = RULES[trigger]
    frame = customers({**SUBSCRIBER, **override})
    retail = frame.drop(columns=list((set(SUBSCRIBER) | set(override)) - set(QUIET)))
    assert TRIGGERS[trigger].subscriptions
    row = recommend(retail, policy).iloc[0]
    assert (row["recommended_action"], row["triggers"]) == ("no_action", "")


def test_the_reasons_read_as_sentences_in_the_customers_numbers(policy: Policy) -> None:
    reasons = {
        trigger: subscriber(policy, override)["action_reason"]
        for trigger, (override, _) in RULES.items()
    }
    assert reasons == {
        "notice_before_end": "Gave notice: the subscription (250 a month) ends in 20 days. "
        "Offer a smaller plan or a pause before the cancellation takes effect",
        "payment_failed": "A payment failed 4 days ago and is still not paid (2 failed attempts "
        "in 90 days): help them update the card or payment method",
        "trial_ending": "Trial ends in 5 days: help them to the features that matter before it "
        "ends",
        "renewal_due": "Renewal in 21 days (12-month plan, 250 a month) at 40% churn risk, "
        "value at risk 120: check in before the renewal",
    }


@pytest.mark.parametrize(
    "others",
    [{}, AT_RISK, {**AT_RISK, **LOYAL}, {**VIEWED, **LOYAL}, OVERDUE, STEP_UP, RENEWAL, TRIAL],
)
def test_a_failed_payment_never_gets_a_discount(policy: Policy, others: dict[str, Any]) -> None:
    """Involuntary churn: the card is leaving, not the customer; fix it, give nothing away."""
    row = subscriber(policy, others, FAILED)
    assert row["recommended_action"] == "payment_recovery"
    assert not policy.actions[row["recommended_action"]].discount
    assert "payment_failed" in row["triggers"]


def test_a_loyal_customer_at_risk_without_a_failed_payment_still_gets_the_discount(
    policy: Policy,
) -> None:
    """The seeds' discount rule holds for subscribers: appreciation for the loyal ..."""
    row = subscriber(policy, AT_RISK, LOYAL, {"payment_late_total": 0.0})
    assert row["recommended_action"] == "loyalty_reward"
    # ... never to hold a price-driven one (every term discounted: a discount seeker).
    seeker = subscriber(
        policy, AT_RISK, LOYAL, {"payment_late_total": 0.0, "discount_order_share": 1.0}
    )
    assert seeker["recommended_action"] == "care_check_in"
    assert "no discount: 100% of orders discounted" in seeker["action_reason"]


@pytest.mark.parametrize(
    ("override", "fires"),
    [
        ({}, True),
        ({"days_since_payment_failed": 30.0}, True),
        ({"days_since_payment_failed": 31.0}, False),  # old: not a recovery any more
        ({"days_since_payment_late": 2.0}, False),  # paid late since: recovered
        ({"days_since_payment_late": 9.0}, True),  # a late payment before this failure
        ({"recency_days": 1.0}, False),  # a payment since the failure
        ({"holds_term": 0.0}, True),  # lapsed by the failure: win the card back
        ({"holds_term": NAN}, False),  # no subscription history
    ],
)
def test_failed_payment_limits(policy: Policy, override: dict[str, float], fires: bool) -> None:
    row = subscriber(policy, FAILED, override)
    assert (row["recommended_action"] == "payment_recovery") is fires


@pytest.mark.parametrize(
    ("override", "fires"),
    [
        ({}, True),
        ({"days_to_noticed_end": 1.0}, True),
        ({"days_to_noticed_end": 0.0}, False),  # takes effect now: too late to offer
        ({"notice_given": 0.0}, False),
    ],
)
def test_notice_gets_the_downgrade_or_pause_offer_before_it_takes_effect(
    policy: Policy, override: dict[str, float], fires: bool
) -> None:
    row = subscriber(policy, AT_RISK, LOYAL, NOTICE, override)
    assert (row["recommended_action"] == "downgrade_or_pause") is fires
    if fires:
        # A renewal they cancelled is no renewal due; the loyal one gets no discount to stay.
        assert "renewal_due" not in row["triggers"]
        assert row["superseded_triggers"] == "at_risk"


def test_service_problems_come_first_and_the_subscription_trigger_is_listed(
    policy: Policy,
) -> None:
    for problem, action in ((DETRACTOR, "service_follow_up"), (TICKET, "resolve_ticket")):
        row = subscriber(policy, problem, NOTICE)
        assert row["recommended_action"] == action
        assert row["superseded_triggers"] == "notice_before_end"
    vip = subscriber(policy, VIP_AT_RISK, FAILED)
    assert vip["recommended_action"] == "vip_call"
    assert "payment_failed" in vip["superseded_triggers"]


@pytest.mark.parametrize(
    ("override", "fires"),
    [
        ({"trial_days_left": 7.0}, True),
        ({"trial_days_left": 8.0}, False),
        ({"on_trial": 0.0}, False),
    ],
)
def test_trial_ending_limits(policy: Policy, override: dict[str, float], fires: bool) -> None:
    row = subscriber(policy, TRIAL, override)
    assert (row["recommended_action"] == "trial_nudge") is fires


@pytest.mark.parametrize(
    ("override", "fires"),
    [
        ({"days_to_renewal": 30.0}, True),
        ({"days_to_renewal": 31.0}, False),
        ({"billing_period_months": 1.0}, False),  # a monthly plan renews every month
        ({"billing_period_months": 6.0}, True),
        ({"risk_tier": "low"}, False),  # low risk: the newsletter, renewal listed as superseded
    ],
)
def test_renewal_due_limits(policy: Policy, override: dict[str, Any], fires: bool) -> None:
    row = subscriber(policy, RENEWAL, override)
    assert (row["recommended_action"] == "renewal_outreach") is fires
    assert "renewal_due" in row["triggers"] or not fires


def test_a_low_risk_renewal_gets_the_newsletter_with_the_renewal_listed(policy: Policy) -> None:
    row = subscriber(policy, RENEWAL, {"risk_tier": "low"})
    assert row["recommended_action"] == "newsletter"
    assert row["superseded_triggers"] == "renewal_due"


def test_renewal_outreach_is_for_customers_with_enough_value_at_risk(policy: Policy) -> None:
    data = policy.to_dict()
    data["triggers"]["renewal_due"]["min_value_at_risk"] = 100.0
    floored = Policy.from_dict(data)
    frame = customers({**SUBSCRIBER, **RENEWAL}, {**SUBSCRIBER, **RENEWAL, "value_at_risk": 99.0})
    actions = recommend(frame, floored)["recommended_action"].tolist()
    assert actions == ["renewal_outreach", "no_action"]
    unknown = customers({**SUBSCRIBER, **RENEWAL, "value_at_risk": NAN})
    assert recommend(unknown, floored)["recommended_action"].tolist() == ["no_action"]


def test_renewal_outreach_is_planned_by_value_at_risk(policy: Policy) -> None:
    """The policy picks who is due; the campaign planner ranks them by value at risk."""
    clv = [100.0, 900.0, 400.0]
    frame = customers(*({**SUBSCRIBER, **RENEWAL, "clv": v, "value_at_risk": 0.4 * v} for v in clv))
    scores = frame.join(recommend(frame, policy).drop(columns="customer_id"))
    assert (scores["recommended_action"] == "renewal_outreach").all()
    plan = plan_campaign(scores, policy.actions, budget=6.0, default_cost=None)
    assert plan.selected["customer_id"].tolist() == ["c1", "c2"]  # 360 and 160 at risk


def _without_subscription_rules(policy: Policy) -> Policy:
    data = policy.to_dict()
    dropped = {name for name in data["triggers"] if TRIGGERS[name].subscriptions}
    data["triggers"] = {k: v for k, v in data["triggers"].items() if k not in dropped}
    data["rules"] = [r for r in data["rules"] if not set(r["when"]) & dropped]
    used = {r["action"] for r in data["rules"]} | {r.get("fallback") for r in data["rules"]}
    used.add(data["default"]["action"])
    data["actions"] = {k: v for k, v in data["actions"].items() if k in used}
    return Policy.from_dict(data)


def test_retail_customers_get_what_they_got_before_the_subscription_rules(
    policy: Policy,
) -> None:
    retail = customers(
        {}, VIP_AT_RISK, DETRACTOR, TICKET, AT_RISK, {**AT_RISK, **LOYAL}, OVERDUE, VIEWED, STEP_UP
    )
    before = _without_subscription_rules(policy)
    assert len(before.rules) == len(policy.rules) - 4
    pd.testing.assert_frame_equal(recommend(retail, policy), recommend(retail, before))
    assert policy.columns() == before.columns()


def test_on_generated_subscriptions_every_column_exists_and_no_failed_payment_is_discounted(
    policy: Policy,
) -> None:
    tables = generate_subscription_tables(300, seed=1)
    assert tables.events is not None
    failures = tables.events.loc[tables.events["event"] == "payment_failed", "ts"]
    as_of = pd.Timestamp(failures.max()).normalize() + pd.Timedelta(days=1)  # one just failed
    features = build_features(tables, as_of)
    rng = np.random.default_rng(0)
    churn = rng.uniform(0.0, 1.0, len(features))
    clv = rng.lognormal(5.0, 1.0, len(features))
    scores = {"churn_probability": churn, "clv": clv, "value_at_risk": churn * clv}
    scored = pd.concat([features, pd.DataFrame(scores, index=features.index)], axis=1)
    segmented = assign_segments(scored, SegmentThresholds.fit(scored))
    assert [c for c in policy.columns(subscriptions=True) if c not in segmented.columns] == []
    out = recommend(segmented, policy)
    fired = {t for text in out["triggers"] for t in text.split(",") if t}
    assert {"payment_failed", "renewal_due"} <= fired
    discounted = out["recommended_action"].map(lambda a: policy.actions[a].discount)
    assert out.loc[discounted, "discount_eligible"].all()
    failed = out["triggers"].str.contains("payment_failed")
    assert failed.any()
    assert not discounted[failed].any()
    subscription_actions = out["recommended_action"].isin([a for _, a in RULES.values()])
    assert not out.loc[subscription_actions, "action_reason"].str.contains("n/a").any()
