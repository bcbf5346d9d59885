"""Applying the policy to hand-made customers: every rule, the discount rule, channels, frames."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.synthetic import generate_tables
from serving.scoring.policy.apply import OUTPUT_COLUMNS, discount_eligible, recommend
from serving.scoring.policy.schema import Policy, load_policy
from serving.scoring.segments import assign_segments
from tests.serving.scoring.policy.factories import (
    AT_RISK,
    DETRACTOR,
    LOYAL,
    NAN,
    OVERDUE,
    STEP_UP,
    TICKET,
    VIEWED,
    VIP_AT_RISK,
    customers,
    one,
)
from training.thresholds import SegmentThresholds


def test_a_quiet_customer_gets_no_action(policy: Policy) -> None:
    expected = pd.DataFrame(
        {
            "customer_id": pd.array(["c0"], dtype="str"),
            "recommended_action": pd.array(["no_action"], dtype="str"),
            "action_channel": pd.array(["none"], dtype="str"),
            "action_reason": pd.array(
                ["No rule calls for an action (40% churn risk)"], dtype="str"
            ),
            "discount_eligible": [False],
            "preferred_channel": pd.array(["email"], dtype="str"),
            "triggers": pd.array([""], dtype="str"),
            "superseded_triggers": pd.array([""], dtype="str"),
        }
    )
    pd.testing.assert_frame_equal(recommend(customers({}), policy), expected)
    assert tuple(expected.columns) == OUTPUT_COLUMNS


def test_vip_at_risk_gets_a_phone_call(policy: Policy) -> None:
    row = one(policy, **VIP_AT_RISK, sms_click_90d=4.0)
    assert row["recommended_action"] == "vip_call"
    assert row["action_channel"] == "phone"
    assert row["preferred_channel"] == "sms"
    assert row["action_reason"] == (
        "High value (CLV 2,500) at 85% churn risk: a personal call and dedicated support"
    )
    assert row["triggers"] == "high_value_at_risk,at_risk"


def test_mid_value_at_risk_gets_no_call(policy: Policy) -> None:
    assert one(policy, **AT_RISK)["recommended_action"] != "vip_call"


def test_a_detractor_gets_an_immediate_follow_up(policy: Policy) -> None:
    row = one(policy, **DETRACTOR)
    assert row["recommended_action"] == "service_follow_up"
    assert row["action_reason"] == "Last NPS 3 (detractor), 12 days ago: follow up now"
    assert row["triggers"] == "detractor"


def test_a_bad_csat_gets_a_follow_up(policy: Policy) -> None:
    row = one(policy, csat_last=2.0, days_since_csat=5.0)
    assert row["recommended_action"] == "service_follow_up"
    assert row["action_reason"] == "Last CSAT 2 of 5, 5 days ago: follow up now"
    assert one(policy, csat_last=3.0, days_since_csat=5.0)["recommended_action"] == "no_action"


def test_an_unresolved_ticket_is_resolved_first(policy: Policy) -> None:
    row = one(policy, **TICKET)
    assert row["recommended_action"] == "resolve_ticket"
    assert row["action_reason"].startswith("Support ticket still open (1 unresolved, the latest 20")
    assert row["action_channel"] == "email"


def test_never_used_content_and_slipping_gets_onboarding(policy: Policy) -> None:
    row = one(policy, content_view_total=0.0, segment="needs_attention")
    assert row["recommended_action"] == "onboarding_content"
    assert row["action_reason"] == (
        "Never used the educational content (0 views) and 40% churn risk"
    )
    assert row["triggers"] == "no_content,at_risk"
    # A content user, or a customer who is not slipping, gets no onboarding.
    assert one(policy, segment="needs_attention")["recommended_action"] != "onboarding_content"
    assert one(policy, content_view_total=0.0)["recommended_action"] == "no_action"


def test_overdue_against_their_own_rhythm_gets_a_reminder(policy: Policy) -> None:
    row = one(policy, **OVERDUE)
    assert row["recommended_action"] == "reminder"
    assert row["action_reason"] == "No purchase for 40 days, 2.0x their usual gap of 20 days"
    # Long gone: no reminder (the churn alarm still shows).
    gone = one(policy, recency_days=400.0, overdue_ratio=20.0)
    assert gone["recommended_action"] == "no_action"
    assert gone["triggers"] == "churn_alarm"
    assert gone["superseded_triggers"] == "churn_alarm"
    assert gone["action_reason"] == (
        "No rule calls for an action (40% churn risk); fired but not acted on: churn_alarm"
    )


def test_viewed_without_buying_gets_an_offer_on_that_product(policy: Policy) -> None:
    row = one(policy, **VIEWED, **LOYAL)
    assert row["recommended_action"] == "product_offer"
    assert row["discount_eligible"]
    assert row["action_reason"] == (
        "Product views since the last purchase: 2, the latest 3 days ago, with no purchase"
    )
    stale = one(policy, **LOYAL, product_views_since_purchase=2.0, days_since_product_view=30.0)
    assert stale["recommended_action"] == "no_action"


def test_a_step_up_in_order_value_gets_a_vip_welcome(policy: Policy) -> None:
    row = one(policy, **STEP_UP)
    assert row["recommended_action"] == "vip_welcome"
    assert row["action_reason"] == (
        "Latest order 2.5x their earlier average, 5 days ago: a VIP opportunity"
    )
    assert one(policy, last_order_vs_mean=2.5, recency_days=60.0)["recommended_action"] != (
        "vip_welcome"
    )


def test_low_risk_stays_in_the_newsletter(policy: Policy) -> None:
    row = one(policy, risk_tier="low", churn_probability=0.05, push_open_90d=3.0)
    assert row["recommended_action"] == "newsletter"
    assert row["action_channel"] == "email"  # a newsletter is an email, whatever they prefer
    assert row["preferred_channel"] == "push"


# --- discounts: appreciation, not retention ----------------------------------------------------


@pytest.mark.parametrize(
    ("override", "eligible"),
    [
        ({}, False),  # no loyalty, a late payment, no referral
        (LOYAL, True),
        ({"referral_total": 1.0}, True),
        ({"n_purchase_days": 3.0, "payment_late_total": 0.0}, True),  # good payment record
        ({"n_purchase_days": 3.0, "payment_late_total": NAN}, False),  # no payment data
        ({**LOYAL, "tenure_days": 300.0}, False),  # not long enough
        ({**LOYAL, "tenure_days": 30.0, "referral_total": 5.0}, False),  # new: never
        ({**LOYAL, "referral_total": 2.0, "discount_order_share": 0.5}, False),  # seeker
        ({**LOYAL, "discount_order_share": 0.4}, True),
        ({**LOYAL, "tenure_days": NAN}, False),
    ],
)
def test_who_deserves_a_discount(
    policy: Policy, override: dict[str, float], eligible: bool
) -> None:
    frame = customers(override)
    assert discount_eligible(frame, policy.discount).tolist() == [eligible]
    assert recommend(frame, policy)["discount_eligible"].tolist() == [eligible]


def test_a_loyal_referrer_at_risk_gets_a_thank_you_discount(policy: Policy) -> None:
    row = one(policy, **AT_RISK, **LOYAL, referral_total=2.0)
    assert row["recommended_action"] == "loyalty_reward"
    assert row["discount_eligible"]
    assert policy.actions[row["recommended_action"]].discount
    assert row["action_reason"] == (
        "Slipping away at 75% churn risk, with 6 purchase days over 500 days, 2 referrals and "
        "1 late payments"
    )


@pytest.mark.parametrize(
    "override",
    [
        {"tenure_days": 30.0, "referral_total": 3.0},  # a new customer, even a referrer
        {**LOYAL, "referral_total": 3.0, "discount_order_share": 0.8},  # a discount seeker
        {},  # nothing to deserve it
    ],
)
def test_no_discount_without_deserving_it(policy: Policy, override: dict[str, float]) -> None:
    frame = customers({**AT_RISK, **override}, {**VIEWED, **override})
    out = recommend(frame, policy)
    assert not out["discount_eligible"].any()
    assert not out["recommended_action"].map(lambda a: policy.actions[a].discount).any()
    # At risk without a claim to a discount: personal care instead, never nothing.
    assert out["recommended_action"].tolist() == ["care_check_in", "product_follow_up"]


@pytest.mark.parametrize(
    "override",
    [
        {"tenure_days": 30.0},  # new
        {**LOYAL, "discount_order_share": 0.8},  # a discount seeker
        {},  # no record that earns a discount
        {"segment": "needs_attention", "risk_tier": "mid", "value_tier": "high"},
        {"content_view_total": 0.0, "tenure_days": 30.0},  # onboarding decides
    ],
)
def test_valuable_customers_at_risk_never_get_no_action(
    policy: Policy, override: dict[str, float]
) -> None:
    """The discount rule skipping them falls back to personal care (it left them with nothing)."""
    row = one(policy, **{**AT_RISK, **override})
    assert row["recommended_action"] != "no_action"
    assert not policy.actions[row["recommended_action"]].discount
    if row["recommended_action"] == "care_check_in":
        assert "; no discount: " in row["action_reason"]


# --- every trigger that fired: acted on, or shown as superseded -------------------------------


def test_triggers_a_higher_rule_took_over_are_superseded(policy: Policy) -> None:
    row = one(policy, **VIP_AT_RISK, **DETRACTOR, **TICKET, content_view_total=0.0)
    assert row["recommended_action"] == "vip_call"
    assert row["superseded_triggers"] == "detractor,unresolved_ticket,no_content,at_risk"
    onboarding = one(policy, content_view_total=0.0, segment="needs_attention", **OVERDUE)
    assert onboarding["recommended_action"] == "onboarding_content"
    assert onboarding["triggers"] == "no_content,at_risk,overdue"
    assert onboarding["superseded_triggers"] == "overdue"  # both of the rule's are acted on


def test_no_action_with_triggers_names_them_in_the_reason(policy: Policy) -> None:
    row = one(policy, content_view_total=0.0, recency_days=400.0, overdue_ratio=30.0)
    assert row["recommended_action"] == "no_action"
    assert row["triggers"] == "no_content,churn_alarm"
    assert row["superseded_triggers"] == "no_content,churn_alarm"
    assert row["action_reason"] == (
        "No rule calls for an action (40% churn risk); fired but not acted on: "
        "no_content, churn_alarm"
    )


def test_the_reason_says_why_there_is_no_discount(policy: Policy) -> None:
    out = recommend(
        customers(
            {**VIEWED, "tenure_days": 30.0},
            {**VIEWED, **LOYAL, "discount_order_share": 0.8},
            VIEWED,
        ),
        policy,
    )
    base = "Product views since the last purchase: 2, the latest 3 days ago, with no purchase"
    assert out["action_reason"].tolist() == [
        f"{base}; no discount: new customer (30 days)",
        f"{base}; no discount: 80% of orders discounted, non-price care",
        f"{base}; no discount: no loyalty, payment or referral record yet",
    ]
    assert (out["recommended_action"] == "product_follow_up").all()


# --- channels ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("responses", "channel"),
    [
        ({}, "email"),  # nobody answered: the default
        ({"sms_click_90d": 2.0}, "sms"),
        ({"push_open_90d": 1.0}, "push"),
        ({"email_open_90d": 3.0, "sms_click_90d": 1.0}, "email"),  # 1.5 against 1
        ({"email_open_90d": 1.0, "sms_click_90d": 1.0}, "sms"),  # opens count half
        ({"email_click_90d": 1.0, "sms_click_90d": 1.0}, "email"),  # a tie: listed first
        ({"push_open_90d": 2.0, "sms_click_90d": 2.0}, "push"),
        ({"sms_click_90d": NAN}, "email"),
    ],
)
def test_the_channel_they_answer(policy: Policy, responses: dict[str, float], channel: str) -> None:
    row = one(policy, **OVERDUE, **responses)
    assert row["preferred_channel"] == channel
    assert row["action_channel"] == channel


def test_missing_channel_columns_fall_back_to_the_default(policy: Policy) -> None:
    frame = customers({"sms_click_90d": 5.0}).drop(columns=["sms_click_90d", "push_open_90d"])
    assert recommend(frame, policy)["preferred_channel"].tolist() == ["email"]


# --- priority ----------------------------------------------------------------------------------

PRIORITY = [
    (VIP_AT_RISK, "vip_call"),
    (DETRACTOR, "service_follow_up"),
    (TICKET, "resolve_ticket"),
    ({"content_view_total": 0.0, "segment": "needs_attention"}, "onboarding_content"),
    ({**AT_RISK, **LOYAL, "referral_total": 1.0}, "loyalty_reward"),
    (OVERDUE, "reminder"),
    ({**VIEWED, **LOYAL}, "product_offer"),
    (STEP_UP, "vip_welcome"),
]


@pytest.mark.parametrize("top", range(len(PRIORITY)))
def test_the_first_rule_in_priority_order_wins(policy: Policy, top: int) -> None:
    """With the triggers of rule `top` and of every rule below it, rule `top` decides."""
    override: dict[str, Any] = {}
    for trigger, _ in reversed(PRIORITY[top:]):
        override.update(trigger)
    row = one(policy, **override)
    assert row["recommended_action"] == PRIORITY[top][1]


def test_every_trigger_that_fired_is_listed(policy: Policy) -> None:
    row = one(policy, **VIP_AT_RISK, **DETRACTOR, **TICKET, content_view_total=0.0)
    assert row["recommended_action"] == "vip_call"
    assert row["triggers"] == "high_value_at_risk,detractor,unresolved_ticket,no_content,at_risk"


def test_the_rule_order_is_configurable(policy: Policy) -> None:
    data = policy.to_dict()
    data["rules"] = [data["rules"][3], *data["rules"][:3], *data["rules"][4:]]  # ticket first
    reordered = Policy.from_dict(data)
    frame = customers({**VIP_AT_RISK, **TICKET})
    assert recommend(frame, policy)["recommended_action"].tolist() == ["vip_call"]
    assert recommend(frame, reordered)["recommended_action"].tolist() == ["resolve_ticket"]


def test_unless_blocks_a_rule(policy: Policy) -> None:
    data = policy.to_dict()
    reminder = next(r for r in data["rules"] if r["action"] == "reminder")
    reminder["unless"] = ["no_content"]
    changed = Policy.from_dict(data)
    frame = customers(OVERDUE, {**OVERDUE, "content_view_total": 0.0})
    assert recommend(frame, changed)["recommended_action"].tolist() == ["reminder", "no_action"]


# --- the frame ---------------------------------------------------------------------------------


def test_input_is_not_mutated(policy: Policy) -> None:
    frame = customers(VIP_AT_RISK, DETRACTOR, {**VIEWED, **LOYAL}, {})
    before = frame.copy(deep=True)
    recommend(frame, policy)
    pd.testing.assert_frame_equal(frame, before)


def test_index_and_row_order_are_kept(policy: Policy) -> None:
    frame = customers(VIP_AT_RISK, DETRACTOR, TICKET, {}).set_axis([40, 10, 30, 20])
    out = recommend(frame, policy)
    assert out.index.tolist() == [40, 10, 30, 20]
    assert out["customer_id"].tolist() == ["c0", "c1", "c2", "c3"]
    assert out["recommended_action"].tolist() == [
        "vip_call",
        "service_follow_up",
        "resolve_ticket",
        "no_action",
    ]


def test_an_empty_frame(policy: Policy) -> None:
    out = recommend(customers({}).iloc[:0], policy)
    assert out.empty
    assert tuple(out.columns) == OUTPUT_COLUMNS


def test_missing_values_in_reasons_read_n_a(policy: Policy) -> None:
    row = one(policy, **OVERDUE, gap_mean_days=NAN)
    assert row["action_reason"] == "No purchase for 40 days, 2.0x their usual gap of n/a days"


def test_on_generated_data_every_column_exists_and_every_row_gets_one_action() -> None:
    tables = generate_tables(300, seed=1)
    as_of = tables.transactions["ts"].max() + pd.Timedelta(days=1)
    features = build_features(tables, as_of)
    rng = np.random.default_rng(0)
    scores = pd.DataFrame(
        {
            "churn_probability": rng.uniform(0.0, 1.0, len(features)),
            "clv": rng.lognormal(3.0, 1.0, len(features)),
        },
        index=features.index,
    )
    scored = pd.concat([features, scores], axis=1)
    segmented = assign_segments(scored, SegmentThresholds.fit(scored))
    policy = load_policy()
    assert [c for c in policy.columns() if c not in segmented.columns] == []
    out = recommend(segmented, policy)
    assert len(out) == len(features)
    assert out["recommended_action"].isin(list(policy.actions)).all()
    assert (out["action_reason"].str.len() > 0).all()
    discounted = out["recommended_action"].map(lambda a: policy.actions[a].discount)
    assert out.loc[discounted, "discount_eligible"].all()
    phone = out["recommended_action"] == "vip_call"
    assert (out.loc[phone, "action_channel"] == "phone").all()
    # Every trigger that fired is the deciding rule's, or listed as superseded.
    acts_on: dict[str, set[str]] = {}
    for rule in policy.rules:
        for action in filter(None, (rule.action, rule.fallback)):
            acts_on.setdefault(action, set()).update(rule.when)
    for row in out.itertuples():
        fired = set(filter(None, row.triggers.split(",")))
        superseded = set(filter(None, row.superseded_triggers.split(",")))
        assert superseded <= fired
        assert fired - superseded <= acts_on.get(row.recommended_action, set())
        if row.recommended_action == "no_action":
            assert superseded == fired
            assert ("fired but not acted on" in row.action_reason) == bool(fired)
    # No valuable customer at risk is left without an action.
    at_risk = segmented["segment"].isin(["at_risk", "needs_attention"]).to_numpy()
    assert (out.loc[at_risk, "recommended_action"] != "no_action").all()
