"""The policy file: the default loads and round-trips, and every bad file names its key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.scoring.policy.apply import recommend
from serving.scoring.policy.schema import Policy, PolicyError, default_policy_path, load_policy
from serving.scoring.policy.triggers import TRIGGERS
from tests.serving.scoring.policy.factories import DETRACTOR, TICKET, customers


def test_the_default_policy_loads_and_round_trips(policy: Policy) -> None:
    assert default_policy_path().name == "policy.yaml"
    assert Policy.from_dict(policy.to_dict()) == policy
    assert Policy.from_dict(yaml.safe_load(yaml.safe_dump(policy.to_dict()))) == policy
    table = policy.action_table()
    assert {"name", "cost", "success_rate", "channel", "discount"} <= set(table.columns)
    assert table.set_index("name").loc["vip_call", "channel"] == "phone"


def _edit(policy: Policy, change: Any) -> dict[str, Any]:
    data = policy.to_dict()
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d["rules"][0].update(action="vip_cal"), "rules[0].action"),
        (lambda d: d["rules"][1].update(when=["detractors"]), "rules[1].when[0]"),
        (lambda d: d["rules"][2].update(when="bad_csat"), "rules[2].when"),
        (lambda d: d["rules"][6].update(fallback="reminder"), "rules[6].fallback"),
        (lambda d: d["rules"][0].update(reason="CLV {clv:.0d}"), "rules[0].reason"),
        (lambda d: d["rules"][0].update(reason="CLV {clv[0]}"), "rules[0].reason"),
        (lambda d: d["rules"][0].update(priority=1), "rules[0].priority"),
        (lambda d: d["rules"][0].pop("reason"), "rules[0].reason"),
        (lambda d: d["triggers"]["overdue"].update(min_ratoi=2), "triggers.overdue.min_ratoi"),
        (lambda d: d["triggers"]["overdue"].pop("min_overdue_ratio"), "min_overdue_ratio"),
        (lambda d: d["triggers"]["detractor"].update(max_nps="six"), "triggers.detractor.max_nps"),
        (lambda d: d["triggers"]["low_risk"].update(risk_tiers=["lo"]), "risk_tiers[0]"),
        (lambda d: d["triggers"].update(birthday={}), "triggers.birthday"),
        (lambda d: d["actions"]["vip_call"].update(success_rate=1.5), "vip_call.success_rate"),
        (lambda d: d["actions"]["vip_call"].update(cost=-1), "actions.vip_call.cost"),
        (lambda d: d["actions"]["vip_call"].update(channel="fax"), "actions.vip_call.channel"),
        (lambda d: d["actions"]["vip_call"].update(discount="no"), "actions.vip_call.discount"),
        (lambda d: d["actions"]["reminder"].pop("label"), "actions.reminder.label"),
        (lambda d: d["default"].update(action="loyalty_reward"), "default.action"),
        (lambda d: d["discount"].update(seeker_share=None), "discount.seeker_share"),
        (lambda d: d["discount"].pop("min_referrals"), "discount.min_referrals"),
        (lambda d: d["channels"].update(default="pigeon"), "channels.default"),
        (lambda d: d["channels"]["responses"].update(fax={"x": 1}), "channels.responses.fax"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.pop("rules"), "policy.rules"),
    ],
)
def test_a_bad_policy_names_the_bad_key(
    policy: Policy, tmp_path: Path, change: Any, key: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(_edit(policy, change)), encoding="utf-8")
    with pytest.raises(PolicyError, match=re.escape(str(path))) as error:
        load_policy(path)
    assert key in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"), [("", "empty"), ("rules: [", "not valid YAML"), ("- 1", "mapping")]
)
def test_a_file_that_is_no_policy(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match=message):
        load_policy(path)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "nope.yaml")


def test_a_policy_error_is_a_value_error() -> None:
    assert issubclass(PolicyError, ValueError)


def _error(policy: Policy, change: Any) -> str:
    with pytest.raises(PolicyError) as error:
        Policy.from_dict(_edit(policy, change), source="mine.yaml")
    return str(error.value)


def test_an_unknown_key_is_named_with_the_keys_allowed_there(policy: Policy) -> None:
    message = _error(policy, lambda d: d["actions"]["vip_call"].update(colour="gold"))
    assert message == (
        "mine.yaml: actions.vip_call.colour: unknown key "
        "(known: label, channel, discount, cost, success_rate, discount_rate)"
    )
    message = _error(policy, lambda d: d.update(rule=[]))
    assert message.startswith("mine.yaml: policy.rule: unknown key (known: version, actions,")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["discount"].update(min_tenure_days="ninety"),
            "discount.min_tenure_days: expected a number, got 'ninety'",
        ),
        (
            lambda d: d["triggers"]["overdue"].update(min_overdue_ratio=True),
            "triggers.overdue.min_overdue_ratio: expected a number, got True",
        ),
        (
            lambda d: d["actions"]["vip_call"].update(discount="no"),
            "actions.vip_call.discount: expected true or false, got 'no'",
        ),
        (
            lambda d: d["actions"]["vip_call"].update(label=7),
            "actions.vip_call.label: expected a non-empty text, got 7",
        ),
        (lambda d: d.update(channels=["email"]), "channels: expected a mapping, got ['email']"),
        (lambda d: d.update(rules="vip first"), "rules: expected a list, got 'vip first'"),
        (
            lambda d: d["rules"][0].update(when=[]),
            "rules[0].when: expected a non-empty list, got []",
        ),
    ],
)
def test_a_value_of_the_wrong_type_is_named_with_what_was_expected(
    policy: Policy, change: Any, expected: str
) -> None:
    assert _error(policy, change) == f"mine.yaml: {expected}"


def test_an_unknown_trigger_is_named_where_it_is_configured_or_used(policy: Policy) -> None:
    known = ", ".join(TRIGGERS)
    message = _error(policy, lambda d: d["triggers"].update(birthday={"days": 3}))
    assert message == f"mine.yaml: triggers.birthday: unknown key (known: {known})"
    # A rule may only use the triggers the file configures.
    message = _error(policy, lambda d: d["triggers"].pop("bad_csat"))
    assert message.startswith("mine.yaml: rules[2].when[0]: 'bad_csat' is not one of ")
    assert "bad_csat" not in message.removeprefix("mine.yaml: rules[2].when[0]: 'bad_csat'")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["rules"][1].update(reason="NPS {nps_last!r}"),
            "rules[1].reason: not a valid reason template: "
            "{nps_last}: expected {column} or {column:spec}",
        ),
        (
            lambda d: d["default"].update(reason="{churn_probability:.0q}"),
            "default.reason: not a valid reason template: {churn_probability:.0q}: "
            "bad format spec for a number: Unknown format code 'q' for object of type 'float'",
        ),
        (
            lambda d: d["rules"][0].update(reason="  "),
            "rules[0].reason: expected a non-empty text, got '  '",
        ),
    ],
)
def test_a_bad_reason_template_is_named(policy: Policy, change: Any, expected: str) -> None:
    assert _error(policy, change) == f"mine.yaml: {expected}"


def test_an_action_is_named_by_its_key_only(policy: Policy) -> None:
    assert [action.name for action in policy.actions.values()] == list(policy.actions)
    message = _error(policy, lambda d: d["actions"]["vip_call"].update(name="vip"))
    assert message.startswith("mine.yaml: actions.vip_call.name: unknown key")


def test_the_triggers_keep_the_order_of_the_file(policy: Policy) -> None:
    data = policy.to_dict()
    data["triggers"] = dict(reversed(data["triggers"].items()))
    reversed_ = Policy.from_dict(data)
    assert list(reversed_.triggers) == list(reversed(list(policy.triggers)))
    frame = customers({**DETRACTOR, **TICKET})
    assert recommend(frame, policy)["triggers"].tolist() == ["detractor,unresolved_ticket"]
    assert recommend(frame, reversed_)["triggers"].tolist() == ["unresolved_ticket,detractor"]
