"""The retention policy: one recommended action, channel and reason per scored customer.

The policy is data (the packaged default is `policy.yaml` beside this module): named
triggers with their parameters, rules in priority order mapping triggers to actions, the
discount rule, the channel preference and, per action, its label, channel, cost and assumed
success rate (for the campaign planner). This module only validates it and applies it to a
frame, vectorised: a million customers take a few seconds.

Triggers (each fires or not for every customer; missing data never fires):

======================  =========================================================================
high_value_at_risk      `value_tier` in `value_tiers` and `risk_tier` in `risk_tiers`.
detractor               `nps_last` <= `max_nps`, given at most `max_days_since` days ago
                        (`days_since_nps`; null: any time).
bad_csat                `csat_last` <= `max_csat`, at most `max_days_since` days ago.
unresolved_ticket       `unresolved_tickets` >= `min_tickets`, the latest ticket at most
                        `max_days_since` days ago (`days_since_support_ticket`; null: any time).
no_content              `content_view_total` <= `max_content_views`.
at_risk                 `segment` in `segments`.
overdue                 `overdue_ratio` >= `min_overdue_ratio`, with no purchase for at most
                        `max_recency_days` (null: no limit; beyond, the customer is lost).
churn_alarm             `recency_days` >= `min_recency_days`.
viewed_not_bought       `product_views_since_purchase` >= `min_views` and the latest product
                        view at most `max_days_since_view` days ago (null: any time).
order_step_up           `last_order_vs_mean` >= `min_ratio`, the order at most `max_recency_days`
                        days ago (null: any time).
low_risk                `risk_tier` in `risk_tiers`.
======================  =========================================================================

Discount eligibility (`discount_eligible`): tenure of at least `min_tenure_days` (never new
customers), not a discount seeker (`discount_order_share` below `seeker_share`), and at least
one of loyalty (`tenure_days` and `n_purchase_days` at least `loyal_tenure_days` and
`loyal_purchase_days`), a good payment record (`good_payer_purchase_days` purchase days with
at most `max_late_payments` in `payment_late_total`) or referrals (`referral_total` at least
`min_referrals`). Missing data never makes a customer eligible.

Preferred channel (`preferred_channel`): the weighted sum of each channel's response columns;
the highest wins, ties go to the channel listed first; nobody answered: the default channel.
"""

from __future__ import annotations

import importlib.resources
import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

from features.columns import ColumnData, categorical, numbers, row_count, text_arrays
from serving.scoring.segments import SEGMENTS, TIERS

ID = "customer_id"
CHANNELS = ("email", "sms", "push", "messenger", "phone")
NO_CHANNEL = "none"
PREFERRED = "preferred"
OUTPUT_COLUMNS = (
    ID,
    "recommended_action",
    "action_channel",
    "action_reason",
    "discount_eligible",
    "preferred_channel",
    "triggers",
)
MISSING_TEXT = "n/a"
Texts = npt.NDArray[np.object_]


class PolicyError(ValueError):
    """A policy file or mapping that is not a valid policy; the message names the bad key."""


# ---------------------------------------------------------------------------------------------
# The triggers: parameters (name -> kind) and the vectorised condition.


class _Data:
    """Column access for the triggers: numbers as float arrays (NaN when absent), labels.

    One per frame (or dict of columns) and call: each column is read once however many
    triggers, rules and reasons look at it (a fixed cost per read that dominates small
    requests).
    """

    def __init__(self, data: ColumnData, n: int | None = None) -> None:
        self.data = data
        self.n = row_count(data, n)
        self._numbers: dict[str, np.ndarray] = {}

    def number(self, name: str) -> np.ndarray:
        """The column as floats; shared by every caller, so read-only."""
        values = self._numbers.get(name)
        if values is None:
            values = numbers(self.data, name, self.n).view()
            values.flags.writeable = False
            self._numbers[name] = values
        return values

    def isin(self, name: str, allowed: Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
        if name not in self.data:
            raise ValueError(
                f"the policy needs column {name!r}: "
                "run serving.scoring.segments.assign_segments first"
            )
        column = self.data[name]
        coded = categorical(column)
        if coded is not None:
            levels = coded.categories.tolist()
            if set(levels) <= set(vocabulary):
                # The values are known without reading them: one test per level, not per row
                # (code -1, missing, takes the last entry: False).
                wanted = np.array([level in allowed for level in levels] + [False])
                return wanted[coded.codes]
        column = pd.Series(column)
        unknown = set(column.dropna().unique()) - set(vocabulary)
        if unknown:
            raise ValueError(
                f"column {name!r} holds {sorted(map(str, unknown))[:5]}, not values of "
                f"{list(vocabulary)}: run serving.scoring.segments.assign_segments first"
            )
        return column.isin(list(allowed)).to_numpy(dtype=bool)


def _at_most(values: np.ndarray, limit: float | None) -> np.ndarray:
    """Whether values <= limit, False for NaN; a None limit lets every value (even NaN) pass."""
    if limit is None:
        return np.ones(values.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return values <= limit


def _at_least(values: np.ndarray, limit: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return values >= limit


_Fire = Callable[[_Data, Mapping[str, Any]], np.ndarray]


@dataclass(frozen=True)
class _Trigger:
    params: Mapping[str, str]  # name -> "number", "optional_number", "tiers" or "segments"
    columns: tuple[str, ...]
    fire: _Fire


TRIGGERS: dict[str, _Trigger] = {
    "high_value_at_risk": _Trigger(
        {"value_tiers": "tiers", "risk_tiers": "tiers"},
        ("value_tier", "risk_tier"),
        lambda d, p: (
            d.isin("value_tier", p["value_tiers"], TIERS)
            & d.isin("risk_tier", p["risk_tiers"], TIERS)
        ),
    ),
    "detractor": _Trigger(
        {"max_nps": "number", "max_days_since": "optional_number"},
        ("nps_last", "days_since_nps"),
        lambda d, p: (
            _at_most(d.number("nps_last"), p["max_nps"])
            & _at_most(d.number("days_since_nps"), p["max_days_since"])
        ),
    ),
    "bad_csat": _Trigger(
        {"max_csat": "number", "max_days_since": "optional_number"},
        ("csat_last", "days_since_csat"),
        lambda d, p: (
            _at_most(d.number("csat_last"), p["max_csat"])
            & _at_most(d.number("days_since_csat"), p["max_days_since"])
        ),
    ),
    "unresolved_ticket": _Trigger(
        {"min_tickets": "number", "max_days_since": "optional_number"},
        ("unresolved_tickets", "days_since_support_ticket"),
        lambda d, p: (
            _at_least(d.number("unresolved_tickets"), p["min_tickets"])
            & _at_most(d.number("days_since_support_ticket"), p["max_days_since"])
        ),
    ),
    "no_content": _Trigger(
        {"max_content_views": "number"},
        ("content_view_total",),
        lambda d, p: _at_most(d.number("content_view_total"), p["max_content_views"]),
    ),
    "at_risk": _Trigger(
        {"segments": "segments"},
        ("segment",),
        lambda d, p: d.isin("segment", p["segments"], SEGMENTS),
    ),
    "overdue": _Trigger(
        {"min_overdue_ratio": "number", "max_recency_days": "optional_number"},
        ("overdue_ratio", "recency_days"),
        lambda d, p: (
            _at_least(d.number("overdue_ratio"), p["min_overdue_ratio"])
            & _at_most(d.number("recency_days"), p["max_recency_days"])
        ),
    ),
    "churn_alarm": _Trigger(
        {"min_recency_days": "number"},
        ("recency_days",),
        lambda d, p: _at_least(d.number("recency_days"), p["min_recency_days"]),
    ),
    "viewed_not_bought": _Trigger(
        {"min_views": "number", "max_days_since_view": "optional_number"},
        ("product_views_since_purchase", "days_since_product_view"),
        lambda d, p: (
            _at_least(d.number("product_views_since_purchase"), p["min_views"])
            & _at_most(d.number("days_since_product_view"), p["max_days_since_view"])
        ),
    ),
    "order_step_up": _Trigger(
        {"min_ratio": "number", "max_recency_days": "optional_number"},
        ("last_order_vs_mean", "recency_days"),
        lambda d, p: (
            _at_least(d.number("last_order_vs_mean"), p["min_ratio"])
            & _at_most(d.number("recency_days"), p["max_recency_days"])
        ),
    ),
    "low_risk": _Trigger(
        {"risk_tiers": "tiers"},
        ("risk_tier",),
        lambda d, p: d.isin("risk_tier", p["risk_tiers"], TIERS),
    ),
}

DISCOUNT_COLUMNS = (
    "tenure_days",
    "n_purchase_days",
    "discount_order_share",
    "payment_late_total",
    "referral_total",
)


# ---------------------------------------------------------------------------------------------
# The policy and its validation.


@dataclass(frozen=True)
class Action:
    """One thing the business can do for a customer.

    Attributes:
        name: the key, the value of `recommended_action`.
        label: what it is, in words a CRM user reads.
        channel: a fixed channel, `none`, or `preferred` (the customer's preferred channel).
        discount: whether it gives money away (then only to discount-eligible customers).
        cost: cost per contacted customer, in currency units.
        success_rate: assumed share of contacted customers it keeps.
        discount_rate: share of the next order given away (discount actions).
    """

    name: str
    label: str
    channel: str
    discount: bool
    cost: float
    success_rate: float
    discount_rate: float = 0.0


@dataclass(frozen=True)
class Rule:
    """When all `when` triggers fired and no `unless` trigger did: `action`, with `reason`."""

    when: tuple[str, ...]
    action: str
    reason: str
    unless: tuple[str, ...] = ()
    fallback: str | None = None


@dataclass(frozen=True)
class DiscountRule:
    """Who deserves a discount (see the module docstring)."""

    min_tenure_days: float
    seeker_share: float
    loyal_tenure_days: float
    loyal_purchase_days: float
    good_payer_purchase_days: float
    max_late_payments: float
    min_referrals: float


@dataclass(frozen=True)
class Policy:
    """A validated retention policy; build it with `load_policy` or `Policy.from_dict`."""

    triggers: Mapping[str, Mapping[str, Any]]
    rules: tuple[Rule, ...]
    default_action: str
    default_reason: str
    discount: DiscountRule
    default_channel: str
    responses: Mapping[str, Mapping[str, float]]
    actions: Mapping[str, Action]
    version: int = 1

    @classmethod
    def from_dict(cls, data: Any, source: str = "policy") -> Policy:
        """Validate a policy mapping (as read from YAML).

        Args:
            data: the mapping.
            source: what to call it in error messages (e.g. the file name).

        Raises:
            PolicyError: the first problem found, naming its key (e.g. `rules[2].action`).
        """
        return _parse(data, source)

    def to_dict(self) -> dict[str, Any]:
        """The policy as plain data, the shape of `policy.yaml` (for logging with a model)."""
        rules = []
        for rule in self.rules:
            item: dict[str, Any] = {"when": list(rule.when), "action": rule.action}
            if rule.unless:
                item["unless"] = list(rule.unless)
            if rule.fallback is not None:
                item["fallback"] = rule.fallback
            item["reason"] = rule.reason
            rules.append(item)
        actions = {}
        for name, action in self.actions.items():
            spec = asdict(action)
            del spec["name"]
            if not action.discount:
                del spec["discount_rate"]
            actions[name] = spec
        return {
            "version": self.version,
            "triggers": {
                name: {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
                for name, params in self.triggers.items()
            },
            "rules": rules,
            "default": {"action": self.default_action, "reason": self.default_reason},
            "discount": asdict(self.discount),
            "channels": {
                "default": self.default_channel,
                "responses": {k: dict(v) for k, v in self.responses.items()},
            },
            "actions": actions,
        }

    def columns(self) -> list[str]:
        """Every column of the scored frame this policy reads (features, scores, segments)."""
        names = [ID]
        for trigger in self.triggers:
            names += TRIGGERS[trigger].columns
        names += DISCOUNT_COLUMNS
        for weights in self.responses.values():
            names += weights
        for text in (*(rule.reason for rule in self.rules), self.default_reason):
            names += [name for _, name, _ in parse_template(text) if name is not None]
        return list(dict.fromkeys(names))

    def action_table(self) -> pd.DataFrame:
        """One row per action: name, label, channel, discount, cost, success and discount rates."""
        return pd.DataFrame([asdict(a) for a in self.actions.values()])


_FORMATTER = string.Formatter()
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Template = tuple[tuple[str, str | None, str], ...]


@lru_cache(maxsize=1024)
def parse_template(text: str) -> Template:
    """A reason template as (literal, column or None, format spec) parts (parsed once per text).

    Raises:
        ValueError: a field that is not `{column}` or `{column:spec}`, or a bad spec.
    """
    parts = []
    for literal, name, spec, conversion in _FORMATTER.parse(text):
        if name is not None:
            if not _IDENTIFIER.match(name) or conversion is not None:
                raise ValueError(f"{{{name}}}: expected {{column}} or {{column:spec}}")
            try:
                format(1.5, spec or "")
            except ValueError as error:
                raise ValueError(
                    f"{{{name}:{spec}}}: bad format spec for a number: {error}"
                ) from None
        parts.append((literal, name, spec or ""))
    return tuple(parts)


class _Reader:
    """Checks one key path of the raw mapping; every error names the source and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> PolicyError:
        return PolicyError(f"{self.source}: {key}: {problem}")

    def mapping(self, value: Any, key: str, keys: Sequence[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {value!r}")
        if keys is not None:
            for name in value:
                if name not in keys:
                    raise self.fail(f"{key}.{name}", f"unknown key (known: {', '.join(keys)})")
        return value

    def get(self, value: dict[str, Any], key: str, name: str) -> Any:
        if name not in value:
            raise self.fail(f"{key}.{name}", "missing")
        return value[name]

    def number(
        self, value: Any, key: str, low: float | None = None, high: float | None = None
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise self.fail(key, f"expected a number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.fail(key, f"{value!r} is outside [{low}, {high}]")
        return float(value)

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty text, got {value!r}")
        return value

    def names(self, value: Any, key: str, allowed: Sequence[str]) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, list) or not value:
            raise self.fail(key, f"expected a non-empty list, got {value!r}")
        for i, item in enumerate(value):
            if item not in allowed:
                raise self.fail(f"{key}[{i}]", f"{item!r} is not one of {', '.join(allowed)}")
        return tuple(value)

    def template(self, value: Any, key: str) -> str:
        text = self.text(value, key)
        try:
            parse_template(text)
        except ValueError as error:
            raise self.fail(key, f"not a valid reason template: {error}") from None
        return text


def _parse(data: Any, source: str) -> Policy:
    r = _Reader(source)
    top = r.mapping(
        data,
        "policy",
        ("version", "triggers", "rules", "default", "discount", "channels", "actions"),
    )
    version = r.get(top, "policy", "version")
    if version != 1:
        raise r.fail("version", f"unsupported policy version {version!r} (expected 1)")

    actions: dict[str, Action] = {}
    raw_actions = r.mapping(r.get(top, "policy", "actions"), "actions")
    fields_ = ("label", "channel", "discount", "cost", "success_rate", "discount_rate")
    for name, spec in raw_actions.items():
        key = f"actions.{name}"
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            raise r.fail(key, "action names are identifiers (letters, digits, _)")
        spec = r.mapping(spec, key, fields_)
        channel = r.get(spec, key, "channel")
        if channel not in (*CHANNELS, NO_CHANNEL, PREFERRED):
            raise r.fail(
                f"{key}.channel",
                f"{channel!r} is not one of {', '.join((*CHANNELS, NO_CHANNEL, PREFERRED))}",
            )
        discount = r.get(spec, key, "discount")
        if not isinstance(discount, bool):
            raise r.fail(f"{key}.discount", f"expected true or false, got {discount!r}")
        actions[name] = Action(
            name=name,
            label=r.text(r.get(spec, key, "label"), f"{key}.label"),
            channel=channel,
            discount=discount,
            cost=r.number(r.get(spec, key, "cost"), f"{key}.cost", 0.0),
            success_rate=r.number(r.get(spec, key, "success_rate"), f"{key}.success_rate", 0, 1),
            discount_rate=r.number(spec.get("discount_rate", 0.0), f"{key}.discount_rate", 0, 1),
        )
    if not actions:
        raise r.fail("actions", "no action defined")
    action_names = tuple(actions)

    triggers: dict[str, dict[str, Any]] = {}
    raw_triggers = r.mapping(r.get(top, "policy", "triggers"), "triggers", tuple(TRIGGERS))
    for name, params in raw_triggers.items():
        key = f"triggers.{name}"
        kinds = TRIGGERS[name].params
        params = r.mapping(params, key, tuple(kinds))
        checked: dict[str, Any] = {}
        for param, kind in kinds.items():
            value = r.get(params, key, param)
            at = f"{key}.{param}"
            if kind == "tiers":
                checked[param] = r.names(value, at, TIERS)
            elif kind == "segments":
                checked[param] = r.names(value, at, SEGMENTS)
            elif kind == "optional_number" and value is None:
                checked[param] = None
            else:
                checked[param] = r.number(value, at)
        triggers[name] = checked
    trigger_names = tuple(triggers)
    if len(trigger_names) > 62:
        raise r.fail("triggers", "at most 62 triggers")

    rules = []
    raw_rules = r.get(top, "policy", "rules")
    if not isinstance(raw_rules, list):
        raise r.fail("rules", f"expected a list of rules, got {raw_rules!r}")
    for i, spec in enumerate(raw_rules):
        key = f"rules[{i}]"
        spec = r.mapping(spec, key, ("when", "unless", "action", "fallback", "reason"))
        action = r.get(spec, key, "action")
        if action not in actions:
            raise r.fail(f"{key}.action", f"unknown action {action!r} (known: {action_names})")
        fallback = spec.get("fallback")
        if fallback is not None:
            if fallback not in actions:
                raise r.fail(
                    f"{key}.fallback", f"unknown action {fallback!r} (known: {action_names})"
                )
            if not actions[action].discount:
                raise r.fail(f"{key}.fallback", f"{action!r} gives no discount: no fallback needed")
            if actions[fallback].discount:
                raise r.fail(f"{key}.fallback", f"{fallback!r} gives a discount too")
        unless = spec.get("unless")
        rule = Rule(
            when=r.names(r.get(spec, key, "when"), f"{key}.when", trigger_names),
            unless=() if unless is None else r.names(unless, f"{key}.unless", trigger_names),
            action=action,
            fallback=fallback,
            reason=r.template(r.get(spec, key, "reason"), f"{key}.reason"),
        )
        rules.append(rule)

    default = r.mapping(r.get(top, "policy", "default"), "default", ("action", "reason"))
    default_action = r.get(default, "default", "action")
    if default_action not in actions:
        raise r.fail("default.action", f"unknown action {default_action!r}")
    if actions[default_action].discount:
        raise r.fail("default.action", f"{default_action!r} gives a discount: never by default")
    default_reason = r.template(r.get(default, "default", "reason"), "default.reason")

    discount_keys = tuple(f.name for f in DiscountRule.__dataclass_fields__.values())
    raw_discount = r.mapping(r.get(top, "policy", "discount"), "discount", discount_keys)
    discount = DiscountRule(
        **{
            k: r.number(r.get(raw_discount, "discount", k), f"discount.{k}", 0.0)
            for k in discount_keys
        }
    )

    channels = r.mapping(r.get(top, "policy", "channels"), "channels", ("default", "responses"))
    default_channel = r.get(channels, "channels", "default")
    if default_channel not in CHANNELS:
        raise r.fail("channels.default", f"{default_channel!r} is not one of {CHANNELS}")
    responses: dict[str, dict[str, float]] = {}
    raw_responses = r.mapping(r.get(channels, "channels", "responses"), "channels.responses")
    for channel, weights in raw_responses.items():
        key = f"channels.responses.{channel}"
        if channel not in CHANNELS:
            raise r.fail(key, f"{channel!r} is not one of {CHANNELS}")
        weights = r.mapping(weights, key)
        responses[channel] = {}
        for column, weight in weights.items():
            if not isinstance(column, str) or not _IDENTIFIER.match(column):
                raise r.fail(f"{key}.{column}", "expected a column name")
            responses[channel][column] = r.number(weight, f"{key}.{column}", 0.0)

    return Policy(
        triggers=triggers,
        rules=tuple(rules),
        default_action=default_action,
        default_reason=default_reason,
        discount=discount,
        default_channel=default_channel,
        responses=responses,
        actions=actions,
        version=1,
    )


def default_policy_path() -> Path:
    """The packaged default policy file."""
    return Path(str(importlib.resources.files("serving.scoring.policy").joinpath("policy.yaml")))


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and validate a policy YAML file.

    Args:
        path: the file; None reads the packaged default (`serving/scoring/policy/policy.yaml`).

    Returns:
        The validated policy.

    Raises:
        FileNotFoundError: no such file.
        PolicyError: not YAML, or not a valid policy; the message names the file and key.
    """
    if path is None:
        file: Path | str = "serving/scoring/policy/policy.yaml (packaged default)"
        text = (
            importlib.resources.files("serving.scoring.policy")
            .joinpath("policy.yaml")
            .read_text("utf-8")
        )
    else:
        file = Path(path)
        text = file.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PolicyError(f"{file}: not valid YAML: {error}") from None
    if data is None:
        raise PolicyError(f"{file}: the policy is empty")
    return Policy.from_dict(data, source=str(file))


# ---------------------------------------------------------------------------------------------
# Applying the policy.


def _format_column(values: np.ndarray, spec: str) -> np.ndarray:
    """`format(value, spec)` for every value, formatting each distinct rounded value once."""
    out = np.full(values.shape, MISSING_TEXT, dtype=object)
    finite = np.isfinite(values)
    shown = values[finite]
    match = re.fullmatch(r"[^.]*\.(\d+)([f%])", spec)
    if match:
        # Rounding first leaves few distinct values; `+ 0.0` turns -0.0 into 0.0 ("-0").
        scale = 100.0 if match[2] == "%" else 1.0
        shown = np.round(shown * scale, int(match[1])) / scale + 0.0
    distinct, inverse = np.unique(shown, return_inverse=True)
    labels = np.array([format(v, spec) for v in distinct.tolist()], dtype=object)
    out[finite] = labels[inverse]
    return out


def _render(parts: Template, data: _Data, rows: np.ndarray) -> Texts:
    """A template's text for the given row positions, built column by column."""
    text = np.full(rows.size, "", dtype=object)
    for literal, name, spec in parts:
        if literal:
            text += literal
        if name is not None:
            text += _format_column(data.number(name)[rows], spec)
    return text


_SEEKER = "{discount_order_share:.0%} of orders discounted, non-price care"
_NEW = "new customer ({tenure_days:.0f} days)"


def _why_no_discount(data: _Data, rule: DiscountRule, rows: np.ndarray) -> Texts:
    tenure = data.number("tenure_days")[rows]
    share = data.number("discount_order_share")[rows]
    with np.errstate(invalid="ignore"):
        new = ~(tenure >= rule.min_tenure_days)
        seeker = share >= rule.seeker_share
    why = np.full(rows.size, "no loyalty, payment or referral record yet", dtype=object)
    seeker &= ~new
    if seeker.any():
        why[seeker] = _render(parse_template(_SEEKER), data, rows[seeker])
    if new.any():
        why[new] = _render(parse_template(_NEW), data, rows[new])
    return why


def discount_eligible(scored: pd.DataFrame, rule: DiscountRule) -> np.ndarray:
    """Whether each customer deserves a discount (see the module docstring); never mutates."""
    return _eligible(_Data(scored), rule)


def _eligible(data: _Data, rule: DiscountRule) -> np.ndarray:
    tenure = data.number("tenure_days")
    days = data.number("n_purchase_days")
    with np.errstate(invalid="ignore"):
        established = tenure >= rule.min_tenure_days
        seeker = data.number("discount_order_share") >= rule.seeker_share
        loyal = (tenure >= rule.loyal_tenure_days) & (days >= rule.loyal_purchase_days)
        good_payer = (days >= rule.good_payer_purchase_days) & (
            data.number("payment_late_total") <= rule.max_late_payments
        )
        referrer = data.number("referral_total") >= rule.min_referrals
    return established & ~seeker & (loyal | good_payer | referrer)


def preferred_channels(scored: pd.DataFrame, policy: Policy) -> np.ndarray:
    """The channel each customer answers most (see the module docstring), as text."""
    return _preferred(_Data(scored), policy)


def _preferred(data: _Data, policy: Policy) -> np.ndarray:
    names = list(policy.responses)
    if not names:
        return np.full(data.n, policy.default_channel, dtype=object)
    score = np.zeros((data.n, len(names)))
    for j, weights in enumerate(policy.responses.values()):
        for column, weight in weights.items():
            score[:, j] += weight * np.nan_to_num(data.number(column), nan=0.0)
    best = np.argmax(score, axis=1)  # the first maximum: ties go to the channel listed first
    answered = score[np.arange(data.n), best] > 0
    labels = np.array(names, dtype=object)
    return np.where(answered, labels[best], policy.default_channel)


def evaluate_triggers(scored: pd.DataFrame, policy: Policy) -> dict[str, np.ndarray]:
    """Each configured trigger's boolean array over the rows of `scored`."""
    return _fire(_Data(scored), policy)


def _fire(data: _Data, policy: Policy) -> dict[str, np.ndarray]:
    return {name: TRIGGERS[name].fire(data, params) for name, params in policy.triggers.items()}


def _trigger_text(fired: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Comma-separated names of the triggers fired, via one bit mask per row."""
    mask = np.zeros(n, dtype=np.int64)
    names = list(fired)
    for bit, name in enumerate(names):
        mask |= fired[name].astype(np.int64) << bit
    distinct, inverse = np.unique(mask, return_inverse=True)
    labels = np.array(
        [
            ",".join(name for bit, name in enumerate(names) if m >> bit & 1)
            for m in distinct.tolist()
        ],
        dtype=object,
    )
    return labels[inverse]


def recommend(scored: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """One recommended action per customer, with its channel and reason.

    Args:
        scored: one row per customer: `customer_id`, the scores, the features and the
            columns of `serving.scoring.segments.assign_segments`. Feature columns a trigger needs
            but the frame lacks (no events table, say) count as missing data: the trigger
            does not fire. `Policy.columns` lists what is read.
        policy: the policy (see `load_policy`).

    Returns:
        A new frame on the index of `scored`: `customer_id`, `recommended_action` (an action
        name), `action_channel` (a channel or `none`), `action_reason` (text in the
        customer's own numbers), `discount_eligible`, `preferred_channel` and `triggers`
        (comma-separated names of the triggers that fired, empty if none).

    Raises:
        ValueError: no `customer_id`, or the segment columns a trigger needs are absent.
    """
    if ID not in scored.columns:
        raise ValueError(f"the scored frame has no {ID!r} column")
    actions = recommend_columns(scored, len(scored), policy)
    return pd.DataFrame({ID: scored[ID].array, **text_arrays(actions)}, index=scored.index)


def recommend_columns(scored: ColumnData, n: int, policy: Policy) -> dict[str, Any]:
    """`recommend`'s columns but `customer_id`, from a frame or a dict of columns.

    Text columns are numpy object arrays (`text_arrays` makes them a frame's `str`).
    """
    data = _Data(scored, n)
    fired = _fire(data, policy)
    eligible = _eligible(data, policy.discount)

    action_index = {name: i for i, name in enumerate(policy.actions)}
    default = action_index[policy.default_action]
    chosen = np.full(n, default, dtype=np.int16)
    by_rule = np.full(n, -1, dtype=np.int16)
    fell_back = np.zeros(n, dtype=bool)
    open_ = np.ones(n, dtype=bool)
    for i, rule in enumerate(policy.rules):
        hit = open_.copy()
        for name in rule.when:
            hit &= fired[name]
        for name in rule.unless:
            hit &= ~fired[name]
        if policy.actions[rule.action].discount:
            if rule.fallback is None:
                hit &= eligible
            else:
                blocked = hit & ~eligible
                fell_back |= blocked
                chosen[blocked] = action_index[rule.fallback]
            chosen[hit & eligible] = action_index[rule.action]
        else:
            chosen[hit] = action_index[rule.action]
        by_rule[hit] = i
        open_ &= ~hit

    # Each row gets exactly one reason, rendered for all the rows of its rule at once.
    reason = np.empty(n, dtype=object)
    for i in range(-1, len(policy.rules)):
        template = parse_template(policy.default_reason if i < 0 else policy.rules[i].reason)
        mine = by_rule == i
        rows = np.flatnonzero(mine & ~fell_back)
        if rows.size:
            reason[rows] = _render(template, data, rows)
        rows = np.flatnonzero(mine & fell_back)
        if rows.size:
            why = _why_no_discount(data, policy.discount, rows)
            reason[rows] = _render(template, data, rows) + "; no discount: " + why

    preferred = _preferred(data, policy)
    fixed = np.array([a.channel for a in policy.actions.values()], dtype=object)
    channel = fixed[chosen]
    channel = np.where(channel == PREFERRED, preferred, channel)
    names = np.array(list(policy.actions), dtype=object)
    return {
        "recommended_action": names[chosen],
        "action_channel": channel,
        "action_reason": reason,
        "discount_eligible": eligible,
        "preferred_channel": preferred,
        "triggers": _trigger_text(fired, n),
    }
