"""Campaign planning: whom to contact, under a budget, for the most expected retained value.

The rule, in one place:

* Contacting customer i with their recommended action a saves, in expectation,
  ``expected_retained_value = churn_probability_i * success_rate_a * clv_i``: the margin that
  would leave (churn_probability x clv, the value at risk) times the chance that the action keeps
  the customer. A customer who would stay anyway has a low churn probability, so contacting them
  is worth little however valuable they are: that is budget wasted.
* ``expected_net_value = expected_retained_value - cost_a``. Only customers with an action
  (not ``"none"`` or ``"no_action"``) and a net value above ``min_net_value`` (0 by default)
  are candidates; the others are counted as skipped, never contacted.
* Choosing candidates to maximise the total net value with total cost <= budget is a 0/1
  knapsack. Two plans are built and the better one is kept:

  1. greedy: candidates in decreasing net value per unit of cost (free actions first), each
     taken while it still fits the budget left; one that does not fit is passed over and the
     smaller ones after it may still fill the remainder;
  2. best single item first: the candidate with the largest net value that fits the budget on its
     own, then the same greedy fill with what is left.

  The greedy alone can be arbitrarily bad (a cheap small item can crowd out one big valuable
  item); the better of the two is at least half of the optimum (the classic 1/2-approximation:
  the greedy prefix plus the first item that did not fit is worth more than the optimum of the
  fractional relaxation). Ties go to the greedy.
* ``rank`` is the order in which a plan took the customers: rank 1 is contacted first, and cutting
  the list from the bottom keeps the most valuable part of the plan.

Action costs are per action, so the greedy fill needs at most one vectorised pass per distinct
cost: a million customers plan in well under a second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from serving.campaign.knapsack import RULE_TEXT, Rule, select
from serving.scoring.columns import CAMPAIGN_COLUMNS

NO_ACTIONS = frozenset({"none", "no_action"})
"""`recommended_action` values meaning "do not contact" ("no_action" is the retention policy's)."""

SCORE_COLUMNS = CAMPAIGN_COLUMNS
"""Columns `plan_campaign` reads from the scores; others (`value_at_risk` included) are ignored."""

PLAN_COLUMNS = (
    "rank",
    "customer_id",
    "recommended_action",
    "action_channel",
    "action_reason",
    "discount",
    "segment",
    "churn_probability",
    "clv",
    "cost",
    "expected_retained_value",
    "expected_net_value",
)
"""Columns of `CampaignPlan.selected`, one row per customer to contact, in rank order."""

BY_ACTION_COLUMNS = (
    "action",
    "discount",
    "success_rate",
    "cost_per_contact",
    "recommended",
    "candidates",
    "contacts",
    "cost",
    "expected_retained_value",
    "expected_net_value",
)
"""Columns of `CampaignPlan.by_action`, one row per action recommended to anyone."""

_MAX_SHOWN = 5


@dataclass(frozen=True)
class ActionTerms:
    """What one retention action costs and achieves.

    Attributes:
        cost: cost of one contact, in currency units (>= 0).
        success_rate: probability that the action keeps a customer who would otherwise leave.
        discount: the action grants a discount (a tool of appreciation, not of retention: the
            policy decides who deserves one; the plan reports how much of the budget goes there).
    """

    cost: float
    success_rate: float
    discount: bool = False


@dataclass(frozen=True)
class CampaignTotals:
    """The figures of a plan.

    Attributes:
        customers: rows in the scores.
        with_action: customers whose recommended action is not one of `NO_ACTIONS`.
        candidates: customers with an action and an expected net value above `min_net_value`.
        skipped_non_positive: customers with an action whose expected net value is not above
            `min_net_value` (contacting them costs at least what it can save); never contacted.
        contacts: customers selected.
        total_cost: cost of the selected contacts.
        expected_retained_value: expected margin kept by the selected contacts.
        expected_net_value: `expected_retained_value - total_cost`.
        budget: the budget given (`math.inf` when unlimited).
        budget_left: `budget - total_cost`.
        discount_contacts: selected contacts whose action grants a discount.
        discount_cost: the cost of those contacts.
        min_net_value: the candidate threshold used.
        rule: which of the two plans won: "greedy" or "best_single_first".
    """

    customers: int
    with_action: int
    candidates: int
    skipped_non_positive: int
    contacts: int
    total_cost: float
    expected_retained_value: float
    expected_net_value: float
    budget: float
    budget_left: float
    discount_contacts: int
    discount_cost: float
    min_net_value: float
    rule: Rule


@dataclass(frozen=True)
class CampaignPlan:
    """Whom to contact, with what, and what it is expected to bring.

    Attributes:
        selected: one row per customer to contact, in rank order (`PLAN_COLUMNS`).
        by_action: per action: terms, customers recommended it, candidates, contacts, cost and
            expected values (`BY_ACTION_COLUMNS`), largest expected net value first.
        totals: the plan's figures.
    """

    selected: pd.DataFrame
    by_action: pd.DataFrame
    totals: CampaignTotals

    def summary(self) -> str:
        """A short human-readable account of the plan."""
        t = self.totals
        budget = "unlimited" if math.isinf(t.budget) else f"{t.budget:,.2f}"
        left = "unlimited" if math.isinf(t.budget_left) else f"{t.budget_left:,.2f}"
        lines = [
            f"Campaign plan: {t.contacts:,} of {t.customers:,} customers to contact "
            f"(budget {budget}, spent {t.total_cost:,.2f}, left {left})",
            f"  expected retained value {t.expected_retained_value:,.2f}, "
            f"net of cost {t.expected_net_value:,.2f}",
            f"  candidates {t.candidates:,}; not worth contacting (net <= "
            f"{t.min_net_value:g}) {t.skipped_non_positive:,}; no action "
            f"{t.customers - t.with_action:,}; left out by the budget "
            f"{t.candidates - t.contacts:,}",
            f"  discount offers {t.discount_contacts:,} (cost {t.discount_cost:,.2f})",
            f"  rule: {RULE_TEXT[t.rule]}",
        ]
        if len(self.by_action):
            lines.append("  by action:")
            for row in self.by_action.itertuples(index=False):
                lines.append(
                    f"    {row.action}: {row.contacts:,} of {row.candidates:,} candidates, "
                    f"cost {row.cost:,.2f}, net {row.expected_net_value:,.2f}"
                    + (" [discount]" if row.discount else "")
                )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The totals, the rule and the per-action breakdown, ready for JSON (inf as None)."""
        totals = {key: _json_number(value) for key, value in asdict(self.totals).items()}
        return {
            "totals": totals,
            "rule": RULE_TEXT[self.totals.rule],
            "by_action": [
                {key: _json_number(value) for key, value in row.items()}
                for row in self.by_action.to_dict(orient="records")
            ],
        }


def parse_actions(
    actions: Mapping[str, Any],
    default_cost: float | None = None,
    default_success_rate: float | None = None,
) -> dict[str, ActionTerms]:
    """Check an action table and fill in the defaults.

    Args:
        actions: per action name, a mapping with `success_rate`, and optionally `cost` and
            `discount` (default False), or an object with those attributes (an `ActionTerms`,
            or the retention policy's `Policy.actions` as they are); other keys (a channel, a
            label...) are ignored.
        default_cost: the cost of actions without their own.
        default_success_rate: the success rate of actions without their own.

    Returns:
        The terms per action name.

    Raises:
        ValueError: a cost is negative or not a number, or missing without a default; a success
            rate is outside [0, 1] or missing without a default; `discount` is not a boolean.
    """
    _check_default(default_cost, "default cost per contact", upper=None)
    _check_default(default_success_rate, "default success rate", upper=1.0)
    parsed: dict[str, ActionTerms] = {}
    for name, entry in actions.items():
        if isinstance(entry, Mapping):
            get = entry.get
        elif hasattr(entry, "success_rate") or hasattr(entry, "cost"):
            get = partial(getattr, entry)
        else:
            raise ValueError(
                f"action {name!r}: expected a mapping with cost, success_rate and discount, "
                f"got {type(entry).__name__}"
            )
        cost = _number(get("cost", None), name, "cost", default_cost, "a default cost per contact")
        rate = _number(
            get("success_rate", None),
            name,
            "success_rate",
            default_success_rate,
            "a default success rate",
        )
        if cost < 0:
            raise ValueError(f"action {name!r}: cost must be >= 0, got {cost:g}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"action {name!r}: success_rate must be within [0, 1], got {rate:g}")
        discount = get("discount", False)
        if not isinstance(discount, bool | np.bool_):
            raise ValueError(f"action {name!r}: discount must be true or false, got {discount!r}")
        parsed[str(name)] = ActionTerms(cost=cost, success_rate=rate, discount=bool(discount))
    return parsed


def plan_campaign(
    scores: pd.DataFrame,
    actions: Mapping[str, Any],
    budget: float,
    default_cost: float | None,
    *,
    min_net_value: float = 0.0,
    default_success_rate: float | None = None,
) -> CampaignPlan:
    """Choose whom to contact to maximise expected retained value minus cost within a budget.

    See the module docstring for the rule. Ties in value per unit of cost go to the larger net
    value, then to the earlier row of `scores`.

    Args:
        scores: one row per customer with at least `SCORE_COLUMNS`: `churn_probability` in
            [0, 1] and `clv` >= 0, both present; `recommended_action` present (`NO_ACTIONS`
            for no action). Not modified.
        actions: the action table, per action name (see `parse_actions`). Actions recommended
            in `scores` but absent from it take `default_cost` and `default_success_rate`.
        budget: the most the campaign may cost (>= 0; `math.inf` for no limit).
        default_cost: the cost per contact of actions without their own (the
            `--cost-per-contact` option); None for no default.
        min_net_value: a candidate's expected net value must exceed this (>= 0).
        default_success_rate: the success rate of actions without their own; None for no
            default.

    Returns:
        The plan.

    Raises:
        ValueError: a column is missing or holds bad values (the message names the column and
            the first customers concerned), a customer_id repeats, the budget or
            `min_net_value` is negative or not a number, the action table is invalid, or an
            action recommended in `scores` has no cost or success rate (the message names it).
    """
    budget = _check_amount(budget, "budget", allow_inf=True)
    min_net_value = _check_amount(min_net_value, "min_net_value", allow_inf=False)
    terms = parse_actions(actions, default_cost, default_success_rate)
    _check_scores(scores)

    codes, names = pd.factorize(scores["recommended_action"], sort=True)
    names = [str(name) for name in names]
    for name in names:
        if name not in NO_ACTIONS and name not in terms:
            terms[name] = _unknown_action(name, default_cost, default_success_rate)
    active_name = np.array([name not in NO_ACTIONS for name in names], dtype=bool)
    name_cost = np.array([terms[n].cost if n in terms else 0.0 for n in names], dtype=float)
    name_rate = np.array([terms[n].success_rate if n in terms else 0.0 for n in names], dtype=float)
    name_discount = np.array([n in terms and terms[n].discount for n in names], dtype=bool)

    churn = scores["churn_probability"].to_numpy(dtype=float)
    clv = scores["clv"].to_numpy(dtype=float)
    has_action = active_name[codes]
    cost = name_cost[codes]
    retained = churn * name_rate[codes] * clv
    net = retained - cost
    is_candidate = has_action & (net > min_net_value)

    candidate_rows = np.flatnonzero(is_candidate)
    chosen, rule = select(cost[candidate_rows], net[candidate_rows], budget)
    rows = candidate_rows[chosen]

    discount = name_discount[codes[rows]]
    selected = _selected_frame(scores, rows, discount, cost[rows], retained[rows], net[rows])
    by_action = _by_action(
        names, codes, has_action, is_candidate, rows, cost, retained, net, terms, len(scores)
    )
    total_cost = float(cost[rows].sum())
    totals = CampaignTotals(
        customers=len(scores),
        with_action=int(has_action.sum()),
        candidates=len(candidate_rows),
        skipped_non_positive=int((has_action & ~is_candidate).sum()),
        contacts=len(rows),
        total_cost=total_cost,
        expected_retained_value=float(retained[rows].sum()),
        expected_net_value=float(net[rows].sum()),
        budget=budget,
        budget_left=max(budget - total_cost, 0.0),
        discount_contacts=int(discount.sum()),
        discount_cost=float(cost[rows][discount].sum()),
        min_net_value=min_net_value,
        rule=rule,
    )
    return CampaignPlan(selected=selected, by_action=by_action, totals=totals)


# --- frames ------------------------------------------------------------------------------------


def _selected_frame(
    scores: pd.DataFrame,
    rows: np.ndarray,
    discount: np.ndarray,
    cost: np.ndarray,
    retained: np.ndarray,
    net: np.ndarray,
) -> pd.DataFrame:
    def take(name: str) -> pd.Series:
        # Column by column, so the other columns of a wide scores frame are never copied; the
        # input's dtypes are kept (strings stay `str`, categories stay categories).
        return scores[name].iloc[rows].reset_index(drop=True)

    out = pd.DataFrame(
        {
            "rank": np.arange(1, len(rows) + 1, dtype=np.int64),
            "customer_id": take("customer_id"),
            "recommended_action": take("recommended_action"),
            "action_channel": take("action_channel"),
            "action_reason": take("action_reason"),
            "discount": discount,
            "segment": take("segment"),
            "churn_probability": take("churn_probability").astype(float),
            "clv": take("clv").astype(float),
            "cost": cost,
            "expected_retained_value": retained,
            "expected_net_value": net,
        }
    )
    return out[list(PLAN_COLUMNS)]


def _by_action(
    names: list[str],
    codes: np.ndarray,
    has_action: np.ndarray,
    is_candidate: np.ndarray,
    rows: np.ndarray,
    cost: np.ndarray,
    retained: np.ndarray,
    net: np.ndarray,
    terms: dict[str, ActionTerms],
    n_rows: int,
) -> pd.DataFrame:
    k = len(names)
    chosen_codes = codes[rows]
    frame = pd.DataFrame(
        {
            "action": pd.Series(names, dtype="str"),
            "discount": np.array([n in terms and terms[n].discount for n in names], dtype=bool),
            "success_rate": [terms[n].success_rate if n in terms else np.nan for n in names],
            "cost_per_contact": [terms[n].cost if n in terms else np.nan for n in names],
            "recommended": np.bincount(codes[has_action], minlength=k).astype(np.int64),
            "candidates": np.bincount(codes[is_candidate], minlength=k).astype(np.int64),
            "contacts": np.bincount(chosen_codes, minlength=k).astype(np.int64),
            "cost": np.bincount(chosen_codes, weights=cost[rows], minlength=k),
            "expected_retained_value": np.bincount(
                chosen_codes, weights=retained[rows], minlength=k
            ),
            "expected_net_value": np.bincount(chosen_codes, weights=net[rows], minlength=k),
        },
        columns=list(BY_ACTION_COLUMNS),
    )
    frame = frame.loc[[name not in NO_ACTIONS for name in names]]
    frame = frame.sort_values(["expected_net_value", "action"], ascending=[False, True])
    return frame.reset_index(drop=True)


# --- checks ------------------------------------------------------------------------------------


def _check_scores(scores: pd.DataFrame) -> None:
    """Raise one ValueError listing every problem with the scores frame."""
    missing = [name for name in SCORE_COLUMNS if name not in scores.columns]
    if missing:
        raise ValueError(
            f"scores: missing column(s) {', '.join(missing)}; the campaign needs "
            f"{', '.join(SCORE_COLUMNS)}"
        )
    ids = scores["customer_id"]
    problems: list[str] = []

    def flag(mask: np.ndarray, column: str, reason: str) -> None:
        if mask.any():
            shown = ", ".join(repr(str(v)) for v in ids.to_numpy()[mask][:_MAX_SHOWN])
            more = ", ..." if mask.sum() > _MAX_SHOWN else ""
            problems.append(
                f"column {column!r}: {reason} on {int(mask.sum()):,} row(s) "
                f"(customer_id {shown}{more})"
            )

    id_missing = ids.isna().to_numpy()
    if id_missing.any():
        problems.append(f"column 'customer_id': missing on {int(id_missing.sum()):,} row(s)")
    flag(ids.duplicated(keep=False).to_numpy() & ~id_missing, "customer_id", "repeated")
    for column, low, high in (("churn_probability", 0.0, 1.0), ("clv", 0.0, math.inf)):
        series = scores[column]
        if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(
            series.dtype
        ):
            problems.append(f"column {column!r}: expected numbers, got dtype {series.dtype}")
            continue
        values = series.to_numpy(dtype=float, na_value=np.nan)
        flag(np.isnan(values), column, "missing value")
        bounds = f"within [{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
        flag(~np.isnan(values) & ((values < low) | (values > high)), column, f"not {bounds}")
    action = scores["recommended_action"]
    # Checked on the distinct names: stripping a million strings would dominate the run time.
    blank_names = [name for name in action.dropna().unique() if not str(name).strip()]
    blank = action.isna().to_numpy() | action.isin(blank_names).to_numpy()
    flag(blank, "recommended_action", "missing (use 'none' for no action)")
    if problems:
        raise ValueError("scores: " + "; ".join(problems))


def _unknown_action(
    name: str, default_cost: float | None, default_success_rate: float | None
) -> ActionTerms:
    if default_cost is None:
        raise ValueError(
            f"action {name!r} is recommended in the scores but has no cost: add it to the "
            f"action table or give a default cost per contact"
        )
    if default_success_rate is None:
        raise ValueError(
            f"action {name!r} is recommended in the scores but has no success_rate: add it to "
            f"the action table or give a default success rate"
        )
    return ActionTerms(cost=default_cost, success_rate=default_success_rate, discount=False)


def _number(value: Any, action: str, key: str, default: float | None, remedy: str) -> float:
    if value is None:
        if default is None:
            raise ValueError(f"action {action!r}: no {key} and no default; give {key} or {remedy}")
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"action {action!r}: {key} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"action {action!r}: {key} must be finite, got {number}")
    return number


def _check_default(value: float | None, what: str, upper: float | None) -> None:
    if value is None:
        return
    number = _check_amount(value, what, allow_inf=False)
    if upper is not None and number > upper:
        raise ValueError(f"{what} must be within [0, {upper:g}], got {number:g}")


def _check_amount(value: float, what: str, *, allow_inf: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and not allow_inf):
        raise ValueError(f"{what} must be a finite number, got {number}")
    if number < 0:
        raise ValueError(f"{what} must be >= 0, got {number:g}")
    return number


# --- writing -----------------------------------------------------------------------------------


def _json_number(value: Any) -> Any:
    """Plain Python values for JSON; infinite amounts (an unlimited budget) become None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
