"""Applying a retention policy: one action, channel and reason per scored customer, vectorised."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from features.columns import ColumnData, text_arrays
from features.schema import ID
from serving.scoring.columns import ACTION_COLUMNS
from serving.scoring.policy.schema import PREFERRED, DiscountRule, Policy, Template, parse_template
from serving.scoring.policy.triggers import TRIGGERS, ScoredColumns

OUTPUT_COLUMNS = (ID, *ACTION_COLUMNS)
MISSING_TEXT = "n/a"
Texts = npt.NDArray[np.object_]


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


def _render(parts: Template, data: ScoredColumns, rows: np.ndarray) -> Texts:
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


def _why_no_discount(data: ScoredColumns, rule: DiscountRule, rows: np.ndarray) -> Texts:
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
    """Whether each customer deserves a discount: appreciation, not retention; never mutates.

    Eligible: a tenure of at least `min_tenure_days` (never new customers), not a discount
    seeker (`discount_order_share` below `seeker_share`), and at least one of loyalty
    (`tenure_days` and `n_purchase_days` at least `loyal_tenure_days` and
    `loyal_purchase_days`), a good payment record (`good_payer_purchase_days` purchase days
    with at most `max_late_payments` in `payment_late_total`) or referrals (`referral_total`
    at least `min_referrals`). Missing data never makes a customer eligible.
    """
    return _eligible(ScoredColumns(scored), rule)


def _eligible(data: ScoredColumns, rule: DiscountRule) -> np.ndarray:
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
    """The channel each customer answers most, as text.

    The weighted sum of each channel's response columns (`policy.channels.responses`); the
    highest wins, ties go to the channel listed first; nobody answered: the default channel.
    """
    return _preferred(ScoredColumns(scored), policy)


def _preferred(data: ScoredColumns, policy: Policy) -> np.ndarray:
    responses = policy.channels.responses
    default = policy.channels.default
    names = list(responses)
    if not names:
        return np.full(data.n, default, dtype=object)
    score = np.zeros((data.n, len(names)))
    for j, weights in enumerate(responses.values()):
        for column, weight in weights.items():
            score[:, j] += weight * np.nan_to_num(data.number(column), nan=0.0)
    best = np.argmax(score, axis=1)  # the first maximum: ties go to the channel listed first
    answered = score[np.arange(data.n), best] > 0
    labels = np.array(names, dtype=object)
    return np.where(answered, labels[best], default)


def evaluate_triggers(scored: pd.DataFrame, policy: Policy) -> dict[str, np.ndarray]:
    """Each configured trigger's boolean array over the rows of `scored`."""
    return _fire(ScoredColumns(scored), policy)


def _fire(data: ScoredColumns, policy: Policy) -> dict[str, np.ndarray]:
    return {name: TRIGGERS[name].fire(data, params) for name, params in policy.triggers.items()}


def _trigger_mask(fired: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """One bit per trigger (in the policy's order) set where it fired, one int64 per row."""
    mask = np.zeros(n, dtype=np.int64)
    for bit, name in enumerate(fired):
        mask |= fired[name].astype(np.int64) << bit
    return mask


def _trigger_text(mask: np.ndarray, names: list[str]) -> np.ndarray:
    """Comma-separated names of the triggers whose bits are set, per row (empty if none)."""
    distinct, inverse = np.unique(mask, return_inverse=True)
    labels = np.array(
        [
            ",".join(name for bit, name in enumerate(names) if m >> bit & 1)
            for m in distinct.tolist()
        ],
        dtype=object,
    )
    return labels[inverse.reshape(mask.shape)]


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
        customer's own numbers), `discount_eligible`, `preferred_channel`, `triggers`
        (comma-separated names of the triggers that fired, empty if none) and
        `superseded_triggers` (those of them the action does not act on, see
        `recommend_columns`).

    Raises:
        ValueError: no `customer_id`, or the segment columns a trigger needs are absent.
    """
    if ID not in scored.columns:
        raise ValueError(f"the scored frame has no {ID!r} column")
    actions = recommend_columns(scored, len(scored), policy)
    return pd.DataFrame({ID: scored[ID].array, **text_arrays(actions)}, index=scored.index)


def recommend_columns(scored: ColumnData, n: int, policy: Policy) -> dict[str, Any]:
    """`recommend`'s columns but `customer_id`, from a frame or a dict of columns.

    Rules are tried in order; the first whose `when` triggers all fired (and none of its
    `unless`) decides. A discount action goes only to discount-eligible customers: the others
    get the rule's fallback (the reason then says why there is no discount) or, without one,
    the next rule. Text columns are numpy object arrays (`text_arrays` makes them a frame's
    `str`).

    Every trigger that fired is acted on or listed as superseded, never dropped silently: the
    deciding rule's `when` triggers are acted on; the others that fired (a rule above took
    the customer, or no rule acts on them) are `superseded_triggers`, and the default's
    reason names them ("fired but not acted on: ...").
    """
    data = ScoredColumns(scored, n)
    fired = _fire(data, policy)
    eligible = _eligible(data, policy.discount)

    trigger_names = list(fired)
    fired_mask = _trigger_mask(fired, n)
    # Per rule (and -1, the default, last), the bits of the triggers it acts on.
    acts_on = np.array(
        [sum(1 << trigger_names.index(t) for t in rule.when) for rule in policy.rules] + [0],
        dtype=np.int64,
    )
    action_index = {name: i for i, name in enumerate(policy.actions)}
    default = action_index[policy.default.action]
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

    superseded = fired_mask & ~acts_on[by_rule]
    superseded_text = _trigger_text(superseded, trigger_names)
    # Each row gets exactly one reason, rendered for all the rows of its rule at once.
    reason = np.empty(n, dtype=object)
    for i in range(-1, len(policy.rules)):
        template = parse_template(policy.default.reason if i < 0 else policy.rules[i].reason)
        mine = by_rule == i
        rows = np.flatnonzero(mine & ~fell_back)
        if rows.size:
            reason[rows] = _render(template, data, rows)
        rows = np.flatnonzero(mine & fell_back)
        if rows.size:
            why = _why_no_discount(data, policy.discount, rows)
            reason[rows] = _render(template, data, rows) + "; no discount: " + why
    unheeded = np.flatnonzero((by_rule == -1) & (superseded != 0))
    if unheeded.size:
        listed = [text.replace(",", ", ") for text in superseded_text[unheeded].tolist()]
        reason[unheeded] += "; fired but not acted on: " + np.array(listed, dtype=object)

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
        "triggers": _trigger_text(fired_mask, trigger_names),
        "superseded_triggers": superseded_text,
    }
