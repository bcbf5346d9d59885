"""The policy file's model: what a valid retention policy is, validated with pydantic.

The policy is data (the packaged default is `policy.yaml` beside this module) so that who gets
which action changes without a release; a bad file fails on load with a message naming the file
and the key at fault (e.g. `rules[2].action`), never half-way through a scoring run.
"""

from __future__ import annotations

import importlib.resources
import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pandas as pd
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetPydanticSchema,
    StrictBool,
    StrictStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, ErrorDetails, PydanticCustomError, core_schema

from features.schema import ID
from serving.scoring.policy.triggers import DISCOUNT_COLUMNS, TRIGGERS
from serving.scoring.segments import SEGMENTS, TIERS

Channel = Literal["email", "sms", "push", "messenger", "phone"]
CHANNELS: tuple[str, ...] = get_args(Channel)
NO_CHANNEL = "none"
PREFERRED = "preferred"
# A fixed channel, none, or the customer's preferred channel.
ActionChannel = Literal[Channel, "none", "preferred"]
MAX_TRIGGERS = 62  # `apply` lists the triggers fired per row as one bit each of an int64


class PolicyError(ValueError):
    """A policy file or mapping that is not a valid policy; the message names the bad key."""


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


# ---------------------------------------------------------------------------------------------
# The values of the file: each check says what it expected, in the file's own words.


def _problem(problem: str, *key: str | int, kind: str = "policy") -> PydanticCustomError:
    """A validation error saying `problem`; `key` continues its location (e.g. "rules", 2)."""
    return PydanticCustomError(kind, "{problem}", {"problem": problem, "key": key})


def _number_within(low: float | None = None, high: float | None = None) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise _problem(f"expected a number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise _problem(f"{value!r} is outside [{low}, {high}]")
        return float(value)

    return check


def _number_or_none(value: Any) -> float | None:
    return None if value is None else _number_within()(value)


def _identifier(problem: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not _IDENTIFIER.match(value):
            raise _problem(problem)
        return value

    return check


def _one_of(allowed: Sequence[str]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise _problem(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return check


def _not_blank(value: str) -> str:
    if not value.strip():
        raise _problem(f"expected a non-empty text, got {value!r}")
    return value


def _reason_template(value: str) -> str:
    try:
        parse_template(value)
    except ValueError as error:
        raise _problem(f"not a valid reason template: {error}") from None
    return value


Number = Annotated[float, BeforeValidator(_number_within())]
NumberOrNone = Annotated[float | None, BeforeValidator(_number_or_none)]
NonNegative = Annotated[float, BeforeValidator(_number_within(0.0))]
Rate = Annotated[float, BeforeValidator(_number_within(0, 1))]
Text = Annotated[StrictStr, AfterValidator(_not_blank)]
ReasonTemplate = Annotated[Text, AfterValidator(_reason_template)]
ActionName = Annotated[
    str, BeforeValidator(_identifier("action names are identifiers (letters, digits, _)"))
]
ColumnName = Annotated[str, BeforeValidator(_identifier("expected a column name"))]
Tiers = Annotated[tuple[Annotated[str, BeforeValidator(_one_of(TIERS))], ...], Field(min_length=1)]
Segments = Annotated[
    tuple[Annotated[str, BeforeValidator(_one_of(SEGMENTS))], ...], Field(min_length=1)
]
TriggerNames = Annotated[tuple[StrictStr, ...], Field(min_length=1)]


# ---------------------------------------------------------------------------------------------
# The sections of the file.


class _Section(BaseModel):
    """A mapping of the policy file: its own keys only, frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _only_known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = [name for name, field in cls.model_fields.items() if not field.exclude]
            for key in data:
                if key not in known:
                    raise _problem(
                        f"unknown key (known: {', '.join(known)})", key, kind="unknown_key"
                    )
        return data


class Action(_Section):
    """One thing the business can do for a customer.

    Attributes:
        name: the key, the value of `recommended_action` (set from the key in `actions`).
        label: what it is, in words a CRM user reads.
        channel: a fixed channel, `none`, or `preferred` (the customer's preferred channel).
        discount: whether it gives money away (then only to discount-eligible customers).
        cost: cost per contacted customer, in currency units.
        success_rate: assumed share of contacted customers it keeps.
        discount_rate: share of the next order given away (discount actions).
    """

    name: str = Field(default="", exclude=True)
    label: Text
    channel: ActionChannel
    discount: StrictBool
    cost: NonNegative
    success_rate: Rate
    discount_rate: Rate = 0.0


class Rule(_Section):
    """When all `when` triggers fired and no `unless` trigger did: `action`, with `reason`.

    A discount `action` goes only to discount-eligible customers; the others get `fallback`
    (an action without a discount) or, with none, the next rule.
    """

    when: TriggerNames
    unless: tuple[StrictStr, ...] = ()
    action: StrictStr
    fallback: StrictStr | None = None
    reason: ReasonTemplate

    @field_validator("unless", mode="before")
    @classmethod
    def _null_means_none(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, list | tuple) and not value:
            raise _problem(f"expected a non-empty list, got {value!r}")
        return value


class DefaultAction(_Section):
    """What a customer no rule matched gets: an action without a discount, and why."""

    action: StrictStr
    reason: ReasonTemplate


class DiscountRule(_Section):
    """Who deserves a discount (see `serving.scoring.policy.apply.discount_eligible`)."""

    min_tenure_days: NonNegative
    seeker_share: NonNegative
    loyal_tenure_days: NonNegative
    loyal_purchase_days: NonNegative
    good_payer_purchase_days: NonNegative
    max_late_payments: NonNegative
    min_referrals: NonNegative


class Channels(_Section):
    """The channel a customer answers (see `serving.scoring.policy.apply.preferred_channels`).

    Attributes:
        default: the channel of customers who answered nothing.
        responses: per channel, a weight per response column (the highest sum wins, ties go to
            the channel listed first).
    """

    default: Channel
    responses: dict[Channel, dict[ColumnName, NonNegative]]


_PARAMETER_TYPES: dict[str, Any] = {
    "number": Number,
    "optional_number": NumberOrNone,
    "tiers": Tiers,
    "segments": Segments,
}


def _parameters(name: str, kinds: Mapping[str, str]) -> type[_Section]:
    """The model of one trigger's parameters (every one required, null where optional)."""
    fields: dict[str, Any] = {param: (_PARAMETER_TYPES[kind], ...) for param, kind in kinds.items()}
    return create_model(name, __base__=_Section, **fields)


# Every trigger optional (the default None is never validated: an explicit null is an error).
_SECTIONS: dict[str, Any] = {
    name: (_parameters(name, trigger.params), None) for name, trigger in TRIGGERS.items()
}
_TriggerSections = create_model("TriggerSections", __base__=_Section, **_SECTIONS)


def _in_file_order(
    value: Any, validate: core_schema.ValidatorFunctionWrapHandler
) -> dict[str, dict[str, Any]]:
    """The configured triggers' parameters, in the file's order (the order of `triggers`)."""
    sections = validate(value)
    return {name: dict(getattr(sections, name)) for name in value}


def _triggers_schema(_source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
    return core_schema.no_info_wrap_validator_function(
        _in_file_order,
        handler.generate_schema(_TriggerSections),
        serialization=core_schema.plain_serializer_function_ser_schema(
            lambda triggers: {name: dict(params) for name, params in triggers.items()}
        ),
    )


_TriggerSettings = Annotated[dict[str, dict[str, Any]], GetPydanticSchema(_triggers_schema)]


class Policy(_Section):
    """A validated retention policy; build it with `load_policy` or `Policy.from_dict`.

    Named triggers with their parameters, rules in priority order mapping triggers to actions,
    the default, the discount rule, the channel preference and, per action, its label, channel,
    cost and assumed success rate (for the campaign planner). The fields are in the order they
    are checked (rules name actions and triggers): an error names the first problem.
    """

    version: Literal[1]
    actions: dict[ActionName, Action]
    triggers: _TriggerSettings
    rules: tuple[Rule, ...]
    default: DefaultAction
    discount: DiscountRule
    channels: Channels

    @field_validator("version", mode="before")
    @classmethod
    def _supported(cls, value: Any) -> Any:
        if value != 1:
            raise _problem(f"unsupported policy version {value!r} (expected 1)")
        return 1

    @field_validator("actions")
    @classmethod
    def _named(cls, actions: dict[str, Action]) -> dict[str, Action]:
        if not actions:
            raise _problem("no action defined")
        return {name: action.model_copy(update={"name": name}) for name, action in actions.items()}

    @field_validator("triggers")
    @classmethod
    def _few_enough(cls, triggers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if len(triggers) > MAX_TRIGGERS:
            raise _problem(f"at most {MAX_TRIGGERS} triggers")
        return triggers

    @model_validator(mode="after")
    def _references_resolve(self) -> Policy:
        known = tuple(self.actions)
        for i, rule in enumerate(self.rules):
            at = ("rules", i)
            if rule.action not in self.actions:
                raise _problem(f"unknown action {rule.action!r} (known: {known})", *at, "action")
            fallback = rule.fallback
            if fallback is not None:
                if fallback not in self.actions:
                    raise _problem(f"unknown action {fallback!r} (known: {known})", *at, "fallback")
                if not self.actions[rule.action].discount:
                    raise _problem(
                        f"{rule.action!r} gives no discount: no fallback needed", *at, "fallback"
                    )
                if self.actions[fallback].discount:
                    raise _problem(f"{fallback!r} gives a discount too", *at, "fallback")
            for part in ("when", "unless"):
                for j, name in enumerate(getattr(rule, part)):
                    if name not in self.triggers:
                        raise _problem(
                            f"{name!r} is not one of {', '.join(self.triggers)}", *at, part, j
                        )
        default = self.default.action
        if default not in self.actions:
            raise _problem(f"unknown action {default!r}", "default", "action")
        if self.actions[default].discount:
            raise _problem(f"{default!r} gives a discount: never by default", "default", "action")
        return self

    @classmethod
    def from_dict(cls, data: Any, source: str = "policy") -> Policy:
        """Validate a policy mapping (as read from YAML).

        Args:
            data: the mapping.
            source: what to call it in error messages (e.g. the file name).

        Raises:
            PolicyError: the first problem found, naming its key (e.g. `rules[2].action`).
        """
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise PolicyError(f"{source}: {_describe(error.errors()[0])}") from None

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
            spec = action.model_dump()
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
            "default": self.default.model_dump(),
            "discount": self.discount.model_dump(),
            "channels": self.channels.model_dump(),
            "actions": actions,
        }

    def columns(self, subscriptions: bool = False) -> list[str]:
        """Every column of the scored frame this policy reads (features, scores, segments).

        Args:
            subscriptions: include what only data with a subscriptions table has: the columns
                of the subscription triggers and the reasons of the rules they start (without
                such data those triggers never fire, so those reasons are never written).
        """
        wanted = [
            name for name in self.triggers if subscriptions or not TRIGGERS[name].subscriptions
        ]
        names = [ID]
        for trigger in wanted:
            names += TRIGGERS[trigger].columns
        names += DISCOUNT_COLUMNS
        for weights in self.channels.responses.values():
            names += weights
        reasons = [rule.reason for rule in self.rules if set(rule.when) <= set(wanted)]
        for text in (*reasons, self.default.reason):
            names += [name for _, name, _ in parse_template(text) if name is not None]
        return list(dict.fromkeys(names))

    def action_table(self) -> pd.DataFrame:
        """One row per action: name, label, channel, discount, cost, success and discount rates."""
        return pd.DataFrame([{"name": a.name, **a.model_dump()} for a in self.actions.values()])


# ---------------------------------------------------------------------------------------------
# Pydantic's errors in the file's words.

_EXPECTED = {
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "too_short": "expected a non-empty list",
    "string_type": "expected a non-empty text",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
}


def _describe(error: ErrorDetails) -> str:
    """`key: problem` for one pydantic error, the key as written in the file (`rules[2].when`)."""
    context = error.get("ctx", {})
    loc = [part for part in (*error["loc"], *context.get("key", ())) if part != "[key]"]
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    kind = error["type"]
    if not loc or (len(loc) == 1 and kind in ("missing", "unknown_key", "extra_forbidden")):
        key = f".policy{key}"  # the top level's own keys, as in `policy.rules: missing`
    value = error.get("input")
    if "problem" in context:
        problem = context["problem"]
    elif kind == "missing":
        problem = "missing"
    elif kind == "extra_forbidden":
        problem = "unknown key"
    elif kind == "literal_error":
        problem = f"{value!r} is not one of {context['expected']}"
    elif kind in _EXPECTED:
        problem = f"{_EXPECTED[kind]}, got {value!r}"
    else:
        problem = error["msg"]
    return f"{key[1:]}: {problem}"


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
