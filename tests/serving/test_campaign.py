"""Tests for campaign planning: the knapsack rule, its guard, totals, bad input and writing."""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from serving.campaign.plan import (
    BY_ACTION_COLUMNS,
    PLAN_COLUMNS,
    ActionTerms,
    CampaignPlan,
    parse_actions,
    plan_campaign,
)
from serving.campaign.publish import write_plan

# Dyadic rates keep most hand computations exact.
ACTIONS: dict[str, dict[str, Any]] = {
    "call": {"cost": 10.0, "success_rate": 0.5, "channel": "phone"},
    "email": {"cost": 1.0, "success_rate": 0.25},
    "voucher": {"cost": 5.0, "success_rate": 0.5, "discount": True},
    "sms": {"cost": 1.0, "success_rate": 0.5},
    "push": {"cost": 0.0, "success_rate": 0.25},
}
CHANNEL = {"call": "phone", "email": "email", "voucher": "email", "sms": "sms", "push": "app"}


def scores(rows: list[tuple[str, float, float, str]]) -> pd.DataFrame:
    """A scores frame from (customer_id, churn_probability, clv, recommended_action) rows."""
    ids, churn, clv, action = zip(*rows, strict=True) if rows else ((), (), (), ())
    return pd.DataFrame(
        {
            "customer_id": pd.Series(ids, dtype="str"),
            "as_of": pd.Timestamp("2024-06-01"),
            "churn_probability": pd.Series(churn, dtype=float),
            "clv": pd.Series(clv, dtype=float),
            "value_at_risk": pd.Series(churn, dtype=float) * pd.Series(clv, dtype=float),
            "segment": pd.Series(["student"] * len(ids), dtype="str"),
            "recommended_action": pd.Series(action, dtype="str"),
            "action_channel": pd.Series([CHANNEL.get(a, "") for a in action], dtype="str"),
            "action_reason": pd.Series([f"why {i}" for i in ids], dtype="str"),
        }
    )


# Hand computation, expected retained value = churn x success x clv, net = that - cost:
#   a: 0.75 x 0.5  x 80  = 30, call    cost 10, net 20, net per cost 2
#   b: 0.5  x 0.25 x 80  = 10, email   cost  1, net  9, net per cost 9
#   c: 1.0  x 0.5  x 36  = 18, voucher cost  5, net 13, net per cost 2.6
#   d: 0.5  x 0.5  x 240 = 60, call    cost 10, net 50, net per cost 5
#   e: 0.25 x 0.25 x 32  =  2, email   cost  1, net  1, net per cost 1
# Greedy order: b, d, c, a, e (costs 1, 10, 5, 10, 1).
FIVE = [
    ("a", 0.75, 80.0, "call"),
    ("b", 0.5, 80.0, "email"),
    ("c", 1.0, 36.0, "voucher"),
    ("d", 0.5, 240.0, "call"),
    ("e", 0.25, 32.0, "email"),
]
FIVE_NET = {"a": 20.0, "b": 9.0, "c": 13.0, "d": 50.0, "e": 1.0}


def test_budget_binds_hand_computed_plan() -> None:
    # Budget 16: b (1), d (11), c (16) fit exactly; a would make 26; e no longer fits.
    plan = plan_campaign(scores(FIVE), ACTIONS, 16.0, None)

    expected = pd.DataFrame(
        {
            "rank": np.array([1, 2, 3], dtype=np.int64),
            "customer_id": pd.Series(["b", "d", "c"], dtype="str"),
            "recommended_action": pd.Series(["email", "call", "voucher"], dtype="str"),
            "action_channel": pd.Series(["email", "phone", "email"], dtype="str"),
            "action_reason": pd.Series(["why b", "why d", "why c"], dtype="str"),
            "discount": [False, False, True],
            "segment": pd.Series(["student"] * 3, dtype="str"),
            "churn_probability": [0.5, 0.5, 1.0],
            "clv": [80.0, 240.0, 36.0],
            "cost": [1.0, 10.0, 5.0],
            "expected_retained_value": [10.0, 60.0, 18.0],
            "expected_net_value": [9.0, 50.0, 13.0],
        }
    )
    assert_frame_equal(plan.selected, expected)
    t = plan.totals
    assert (t.contacts, t.total_cost, t.expected_retained_value) == (3, 16.0, 88.0)
    assert (t.expected_net_value, t.budget_left, t.candidates) == (72.0, 0.0, 5)
    assert (t.discount_contacts, t.discount_cost, t.rule) == (1, 5.0, "greedy")


@pytest.mark.parametrize(
    ("budget", "chosen"),
    [
        (0.5, []),  # nothing fits
        (1.0, ["b"]),
        (9.0, ["b", "c", "e"]),  # d (10) passed over; the smaller ones after it fill the rest
        (11.0, ["b", "d"]),
        (16.0, ["b", "d", "c"]),
        (20.0, ["b", "d", "c", "e"]),  # a passed over, e still fits in the 4 left
        (27.0, ["b", "d", "c", "a", "e"]),
    ],
)
def test_budget_picks_by_net_value_per_cost(budget: float, chosen: list[str]) -> None:
    plan = plan_campaign(scores(FIVE), ACTIONS, budget, None)

    assert plan.selected["customer_id"].tolist() == chosen
    assert plan.selected["rank"].tolist() == list(range(1, len(chosen) + 1))
    assert plan.totals.expected_net_value == sum(FIVE_NET[c] for c in chosen)
    assert plan.totals.total_cost <= budget


def test_low_churn_high_clv_loses_to_high_churn_mid_clv() -> None:
    # rich: 0.05 x 0.5 x 1000 = 25, net 15; at risk: 0.8 x 0.5 x 100 = 40, net 30.
    frame = scores([("rich", 0.05, 1000.0, "call"), ("at_risk", 0.8, 100.0, "call")])

    plan = plan_campaign(frame, ACTIONS, 10.0, None)

    assert plan.selected["customer_id"].tolist() == ["at_risk"]
    assert plan.totals.expected_net_value == pytest.approx(30.0)


@pytest.mark.parametrize("no_action", ["none", "no_action"])
def test_customers_with_no_action_are_never_contacted(no_action: str) -> None:
    frame = scores([("vip", 1.0, 1e6, no_action), ("x", 0.5, 80.0, "email")])
    # Even when the table gives "no action" a price and a success rate.
    actions = {**ACTIONS, no_action: {"cost": 0.0, "success_rate": 1.0}}

    plan = plan_campaign(frame, actions, math.inf, 1.0)

    assert plan.selected["customer_id"].tolist() == ["x"]
    assert (plan.totals.with_action, plan.totals.candidates) == (1, 1)
    assert plan.totals.skipped_non_positive == 0
    assert no_action not in plan.by_action["action"].tolist()


def test_zero_budget_picks_nobody() -> None:
    plan = plan_campaign(scores(FIVE), ACTIONS, 0.0, None)

    assert plan.selected.empty
    assert list(plan.selected.columns) == list(PLAN_COLUMNS)
    t = plan.totals
    assert (t.contacts, t.total_cost, t.expected_net_value, t.budget_left) == (0, 0, 0, 0)
    assert t.candidates == 5


def test_free_actions_are_taken_first_and_cost_nothing() -> None:
    # push costs 0: 1.0 x 0.25 x 8 = 2 net 2, taken even with no budget at all.
    frame = scores([*FIVE, ("f", 1.0, 8.0, "push")])

    plan = plan_campaign(frame, ACTIONS, 0.0, None)

    assert plan.selected["customer_id"].tolist() == ["f"]
    assert plan.totals.total_cost == 0.0


def test_ample_budget_picks_all_positive_net_and_only_them() -> None:
    # f: 0.1 x 0.5 x 10 = 0.5, net -9.5; g: 0.5 x 0.5 x 4 = 1, net exactly 0.
    frame = scores([*FIVE, ("f", 0.1, 10.0, "call"), ("g", 0.5, 4.0, "sms")])

    plan = plan_campaign(frame, ACTIONS, 1_000.0, None)

    assert plan.selected["customer_id"].tolist() == ["b", "d", "c", "a", "e"]
    t = plan.totals
    assert (t.candidates, t.skipped_non_positive, t.contacts) == (5, 2, 5)
    assert t.budget_left == 1_000.0 - 27.0
    unlimited = plan_campaign(frame, ACTIONS, math.inf, None)
    assert_frame_equal(unlimited.selected, plan.selected)
    assert unlimited.totals.budget_left == math.inf


def test_min_net_value_raises_the_bar() -> None:
    plan = plan_campaign(scores(FIVE), ACTIONS, math.inf, None, min_net_value=9.0)

    # b's net is exactly 9: not above the bar.
    assert plan.selected["customer_id"].tolist() == ["d", "c", "a"]
    assert plan.totals.skipped_non_positive == 2


def test_best_single_item_guard() -> None:
    # small: 1.0 x 0.5 x 10 = 5, net 4, 4 per unit cost; big: 1.0 x 0.5 x 500 = 250, net 150,
    # 1.5 per unit cost. Greedy alone takes small, then big no longer fits: net 4 of 150.
    actions = {**ACTIONS, "visit": {"cost": 100.0, "success_rate": 0.5}}
    frame = scores([("small", 1.0, 10.0, "sms"), ("big", 1.0, 500.0, "visit")])

    plan = plan_campaign(frame, actions, 100.0, None)

    assert plan.selected["customer_id"].tolist() == ["big"]
    assert plan.totals.rule == "best_single_first"
    assert plan.totals.expected_net_value == 150.0
    assert "best single" in plan.summary()
    # With one more unit both fit and the plain greedy is best.
    roomy = plan_campaign(frame, actions, 101.0, None)
    assert roomy.selected["customer_id"].tolist() == ["small", "big"]
    assert roomy.totals.rule == "greedy"


def test_best_single_first_fills_the_rest_of_the_budget() -> None:
    # As above plus a twin of small, budget 101: greedy takes small and tiny (net 8), then big
    # no longer fits; big first leaves 1, which small fills: net 154.
    actions = {**ACTIONS, "visit": {"cost": 100.0, "success_rate": 0.5}}
    frame = scores(
        [("small", 1.0, 10.0, "sms"), ("tiny", 1.0, 10.0, "sms"), ("big", 1.0, 500.0, "visit")]
    )

    plan = plan_campaign(frame, actions, 101.0, None)

    assert plan.selected["customer_id"].tolist() == ["big", "small"]
    assert plan.totals.rule == "best_single_first"
    assert plan.totals.total_cost == 101.0


def test_totals_add_up() -> None:
    rng = np.random.default_rng(7)
    n = 2_000
    names = np.array(["none", "call", "email", "voucher", "sms", "push", "letter"])
    frame = scores(
        list(
            zip(
                [f"c{i}" for i in range(n)],
                rng.uniform(0, 1, n),
                rng.gamma(2.0, 50.0, n),
                names[rng.integers(0, len(names), n)],
                strict=True,
            )
        )
    )

    plan = plan_campaign(frame, ACTIONS, 500.0, 2.0, default_success_rate=0.125)

    t, sel, by = plan.totals, plan.selected, plan.by_action
    assert t.contacts == len(sel) == by["contacts"].sum()
    assert t.total_cost == pytest.approx(sel["cost"].sum()) == pytest.approx(by["cost"].sum())
    assert t.total_cost <= 500.0
    assert t.budget_left == pytest.approx(500.0 - t.total_cost)
    assert t.expected_retained_value == pytest.approx(sel["expected_retained_value"].sum())
    assert t.expected_net_value == pytest.approx(t.expected_retained_value - t.total_cost)
    assert t.expected_net_value == pytest.approx(by["expected_net_value"].sum())
    assert t.candidates == by["candidates"].sum()
    assert t.with_action == by["recommended"].sum() == (frame["recommended_action"] != "none").sum()
    assert t.with_action == t.candidates + t.skipped_non_positive
    assert (
        t.discount_contacts
        == sel["discount"].sum()
        == (sel["recommended_action"] == "voucher").sum()
    )
    assert (sel["expected_net_value"] > 0).all()
    assert sel["customer_id"].is_unique
    assert list(by.columns) == list(BY_ACTION_COLUMNS)
    letter = by.set_index("action").loc["letter"]
    assert (letter["cost_per_contact"], letter["success_rate"]) == (2.0, 0.125)
    # A greedy plan is in decreasing net value per unit of cost.
    assert t.rule == "greedy"
    ratio = np.where(sel["cost"] > 0, sel["expected_net_value"] / sel["cost"], np.inf)
    assert (ratio[1:] <= ratio[:-1]).all()


def test_row_order_does_not_change_the_plan() -> None:
    frame = scores(FIVE)
    shuffled = frame.sample(frac=1.0, random_state=3)

    plan = plan_campaign(shuffled, ACTIONS, 20.0, None)

    assert_frame_equal(plan.selected, plan_campaign(frame, ACTIONS, 20.0, None).selected)


def test_input_not_mutated() -> None:
    frame = scores([*FIVE, ("z", 1.0, 10.0, "none")])
    frame.index = pd.Index([10, 11, 12, 13, 14, 15])
    before, actions_before = frame.copy(deep=True), copy.deepcopy(ACTIONS)

    plan = plan_campaign(frame, ACTIONS, 16.0, None)

    assert_frame_equal(frame, before)
    assert actions_before == ACTIONS
    assert plan.selected.index.equals(pd.RangeIndex(3))


def test_actions_fall_back_to_defaults() -> None:
    # "letter" is not in the table; "sms" has no cost of its own here.
    actions = {"sms": {"success_rate": 0.5}}
    frame = scores([("x", 1.0, 10.0, "letter"), ("y", 1.0, 10.0, "sms")])

    plan = plan_campaign(frame, actions, 10.0, 3.0, default_success_rate=0.25)

    # x: 1 x 0.25 x 10 - 3 = -0.5 (skipped); y: 1 x 0.5 x 10 - 3 = 2.
    assert plan.selected["customer_id"].tolist() == ["y"]
    assert plan.selected["cost"].tolist() == [3.0]
    assert plan.totals.skipped_non_positive == 1


@dataclass(frozen=True)
class PolicyAction:
    """The shape of the retention policy's actions: attributes, with more than the planner needs."""

    label: str
    channel: str
    discount: bool
    cost: float
    success_rate: float


def test_parse_actions_accepts_objects_and_ignores_extra_keys() -> None:
    parsed = parse_actions(
        {
            "call": ACTIONS["call"],
            "gift": ActionTerms(2.0, 0.5, True),
            "reward": PolicyAction("Thank-you reward", "preferred", True, 1.0, 0.25),
        }
    )

    assert parsed == {
        "call": ActionTerms(10.0, 0.5, False),
        "gift": ActionTerms(2.0, 0.5, True),
        "reward": ActionTerms(1.0, 0.25, True),
    }
    with pytest.raises(ValueError, match="action 'x': expected a mapping"):
        parse_actions({"x": 3.0})


def _drop(column: str) -> Any:
    return lambda f: f.drop(columns=column)


def _set(column: str, value: Any, row: int = 0) -> Any:
    def change(f: pd.DataFrame) -> pd.DataFrame:
        f = f.copy()
        if value is None and f[column].dtype == "str":
            f[column] = f[column].astype(object)
        f.loc[row, column] = value
        return f

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_drop("clv"), "missing column.*clv"),
        (_drop("action_reason"), "missing column.*action_reason"),
        (_set("churn_probability", 1.5), "churn_probability.*within \\[0, 1\\].*'a'"),
        (_set("churn_probability", np.nan), "churn_probability.*missing"),
        (_set("clv", -1.0), "clv.*>= 0.*'a'"),
        (_set("customer_id", "b"), "customer_id.*repeated"),
        (_set("customer_id", None), "customer_id.*missing"),
        (_set("recommended_action", None), "recommended_action.*missing"),
        (_set("recommended_action", " "), "recommended_action.*missing"),
        (_set("recommended_action", "letter"), "action 'letter'.*no cost"),
        (lambda f: f.assign(clv=f["clv"].astype(str)), "clv.*expected numbers"),
    ],
)
def test_bad_scores_raise_naming_the_problem(change: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_campaign(change(scores(FIVE)), ACTIONS, 10.0, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": -1.0}, "budget must be >= 0"),
        ({"budget": math.nan}, "budget must be a finite number"),
        ({"min_net_value": -1.0}, "min_net_value must be >= 0"),
        ({"default_cost": -2.0}, "default cost per contact must be >= 0"),
        ({"actions": {**ACTIONS, "call": {"cost": 1, "success_rate": 1.5}}}, "'call'.*\\[0, 1\\]"),
        ({"actions": {**ACTIONS, "sms": {"cost": 1, "success_rate": -0.1}}}, "'sms'.*\\[0, 1\\]"),
        ({"actions": {**ACTIONS, "sms": {"cost": -1, "success_rate": 0.5}}}, "'sms'.*cost"),
        ({"actions": {**ACTIONS, "sms": {"cost": "x", "success_rate": 0.5}}}, "'sms'.*number"),
        ({"actions": {**ACTIONS, "sms": {"cost": 1}}}, "'sms'.*no success_rate"),
        ({"actions": {**ACTIONS, "sms": {"success_rate": 0.5}}}, "'sms'.*no cost"),
        (
            {"actions": {**ACTIONS, "sms": {"cost": 1, "success_rate": 0.5, "discount": "yes"}}},
            "'sms'.*discount",
        ),
        (
            {"frame": scores([("x", 0.5, 10.0, "letter")]), "default_cost": 1.0},
            "'letter'.*no success_rate",
        ),
    ],
)
def test_bad_settings_raise_naming_the_problem(kwargs: dict[str, Any], message: str) -> None:
    args = {"frame": scores(FIVE), "actions": ACTIONS, "budget": 10.0, "default_cost": None}
    args.update(kwargs)
    frame = args.pop("frame")
    with pytest.raises(ValueError, match=message):
        plan_campaign(
            frame,
            args.pop("actions"),
            args.pop("budget"),
            args.pop("default_cost"),
            **args,
        )


def test_empty_scores_make_an_empty_plan() -> None:
    plan = plan_campaign(scores([]), ACTIONS, 10.0, None)

    assert plan.selected.empty and plan.by_action.empty
    assert plan.totals.customers == 0
    assert "0 of 0 customers" in plan.summary()


def test_summary_names_the_figures() -> None:
    text = plan_campaign(scores(FIVE), ACTIONS, 16.0, None).summary()

    assert "3 of 5 customers" in text
    assert "spent 16.00" in text
    assert "net of cost 72.00" in text
    assert "discount offers 1" in text
    assert "voucher: 1 of 1 candidates" in text


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_write_plan_round_trip(tmp_path: Path, suffix: str) -> None:
    plan = plan_campaign(scores(FIVE), ACTIONS, 16.0, None)
    target = tmp_path / "out" / f"plan{suffix}"

    table, summary = write_plan(plan, target)

    assert (table, summary) == (target, tmp_path / "out" / "plan.summary.json")
    if suffix == ".parquet":
        assert_frame_equal(pd.read_parquet(table), plan.selected)
    else:  # CSV writes 80.0 as 80, read back as an integer
        assert_frame_equal(pd.read_csv(table), plan.selected, check_dtype=False)
    document = json.loads(summary.read_text())
    assert document["plan"] == target.name
    assert document["totals"]["contacts"] == 3
    assert document["totals"]["expected_net_value"] == 72.0
    assert [row["action"] for row in document["by_action"]] == plan.by_action["action"].tolist()
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([table.name, summary.name])


def test_write_plan_unlimited_budget_is_null_in_json(tmp_path: Path) -> None:
    plan = plan_campaign(scores(FIVE), ACTIONS, math.inf, None)

    _, summary = write_plan(plan, tmp_path / "plan.parquet")

    totals = json.loads(summary.read_text())["totals"]
    assert totals["budget"] is None and totals["budget_left"] is None


def test_write_plan_rejects_other_extensions(tmp_path: Path) -> None:
    plan = plan_campaign(scores(FIVE), ACTIONS, 16.0, None)

    with pytest.raises(ValueError, match=r"\.parquet or \.csv"):
        write_plan(plan, tmp_path / "plan.xlsx")
    assert not list(tmp_path.iterdir())


# --- against brute force -----------------------------------------------------------------------


def _reference(cost: list[float], net: list[float], budget: float) -> list[int]:
    """The documented rule, one customer at a time."""
    candidates = [i for i in range(len(net)) if net[i] > 0]

    def key(i: int) -> tuple[float, float, int]:
        return (-(net[i] / cost[i]) if cost[i] > 0 else -math.inf, -net[i], i)

    def fill(order: list[int], left: float) -> list[int]:
        taken = []
        for i in order:
            if cost[i] <= left:
                taken.append(i)
                left -= cost[i]
        return taken

    order = sorted(candidates, key=key)
    greedy = fill(order, budget)
    affordable = [i for i in order if cost[i] <= budget]
    if not affordable:
        return greedy
    best = max(affordable, key=lambda i: net[i])  # first maximum in greedy order
    single = [best, *fill([i for i in order if i != best], budget - cost[best])]
    return single if sum(net[i] for i in single) > sum(net[i] for i in greedy) else greedy


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.125, 0.25, 0.5, 0.75, 0.875, 1.0]),
            st.integers(0, 400).map(float),
            st.sampled_from(["call", "email", "voucher", "sms", "push", "visit", "none"]),
        ),
        max_size=9,
    ),
    budget=st.integers(0, 150).map(float),
)
def test_matches_the_rule_and_is_within_half_of_optimal(
    rows: list[tuple[float, float, str]], budget: float
) -> None:
    actions = {**ACTIONS, "visit": {"cost": 60.0, "success_rate": 0.75}}
    frame = scores([(f"c{i}", p, clv, a) for i, (p, clv, a) in enumerate(rows)])

    plan = plan_campaign(frame, actions, budget, None)

    terms = parse_actions(actions)
    cost = [terms[a].cost if a != "none" else 0.0 for _, _, a in rows]
    net = [
        p * terms[a].success_rate * clv - terms[a].cost if a != "none" else 0.0
        for p, clv, a in rows
    ]
    assert plan.selected["customer_id"].tolist() == [f"c{i}" for i in _reference(cost, net, budget)]
    assert plan.totals.total_cost <= budget
    candidates = [i for i in range(len(rows)) if net[i] > 0]
    optimum = max(
        (
            sum(net[i] for i in subset)
            for k in range(len(candidates) + 1)
            for subset in itertools.combinations(candidates, k)
            if sum(cost[i] for i in subset) <= budget
        ),
        default=0.0,
    )
    assert plan.totals.expected_net_value >= optimum / 2 - 1e-9


def test_plan_is_a_frozen_dataclass() -> None:
    plan = plan_campaign(scores(FIVE), ACTIONS, 16.0, None)

    assert isinstance(plan, CampaignPlan)
    with pytest.raises(AttributeError):
        plan.totals = plan.totals  # type: ignore[misc]
