"""The policy's triggers: each one's parameters, the columns it reads and its vectorised test.

A trigger fires or not for every customer at once; missing data (an absent column, NaN) never
fires, so a policy runs on whatever features a deployment has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.columns import ColumnData, categorical, numbers, row_count
from serving.scoring.segments import SEGMENTS, TIERS


class ScoredColumns:
    """Column access for the policy: numbers as float arrays (NaN when absent), labels.

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
        """Whether each row's label is one of `allowed` (missing: False).

        Args:
            name: a label column of `serving.scoring.segments.assign_segments`.
            allowed: the labels that fire.
            vocabulary: every label the column may hold.

        Raises:
            ValueError: the column is absent or holds a label outside `vocabulary`.
        """
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


def _at_least(values: np.ndarray, limit: float | None) -> np.ndarray:
    """Whether values >= limit, False for NaN; a None limit lets every value (even NaN) pass."""
    if limit is None:
        return np.ones(values.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return values >= limit


def _before(earlier_days: np.ndarray, later_days: np.ndarray) -> np.ndarray:
    """Whether the event `later_days` ago came after the one `earlier_days` ago (NaN: False)."""
    with np.errstate(invalid="ignore"):
        return later_days < earlier_days


def _payment_failed(d: ScoredColumns, p: Mapping[str, Any]) -> np.ndarray:
    """A subscriber's recent failed payment, not paid late (`payment_late`) nor paid since."""
    failed = d.number("days_since_payment_failed")
    recovered = _before(failed, d.number("days_since_payment_late")) | _before(
        failed, d.number("recency_days")
    )
    return (
        _at_least(d.number("holds_term"), 0.0) & _at_most(failed, p["max_days_since"]) & ~recovered
    )


Fire = Callable[[ScoredColumns, Mapping[str, Any]], np.ndarray]


@dataclass(frozen=True)
class Trigger:
    """One trigger of the policy.

    Attributes:
        params: parameter name -> kind: `number`, `optional_number` (null: no limit), `tiers`
            (a list of `TIERS`) or `segments` (a list of `SEGMENTS`).
        columns: the columns of the scored frame it reads.
        fire: the test: (columns, parameters) -> one boolean per customer.
        subscriptions: its columns exist only for data with a subscriptions table
            (`features.subscriptions`): elsewhere it never fires.
    """

    params: Mapping[str, str]
    columns: tuple[str, ...]
    fire: Fire
    subscriptions: bool = False


TRIGGERS: dict[str, Trigger] = {
    "high_value_at_risk": Trigger(
        {"value_tiers": "tiers", "risk_tiers": "tiers"},
        ("value_tier", "risk_tier"),
        lambda d, p: (
            d.isin("value_tier", p["value_tiers"], TIERS)
            & d.isin("risk_tier", p["risk_tiers"], TIERS)
        ),
    ),
    "detractor": Trigger(
        {"max_nps": "number", "max_days_since": "optional_number"},
        ("nps_last", "days_since_nps"),
        lambda d, p: (
            _at_most(d.number("nps_last"), p["max_nps"])
            & _at_most(d.number("days_since_nps"), p["max_days_since"])
        ),
    ),
    "bad_csat": Trigger(
        {"max_csat": "number", "max_days_since": "optional_number"},
        ("csat_last", "days_since_csat"),
        lambda d, p: (
            _at_most(d.number("csat_last"), p["max_csat"])
            & _at_most(d.number("days_since_csat"), p["max_days_since"])
        ),
    ),
    "unresolved_ticket": Trigger(
        {"min_tickets": "number", "max_days_since": "optional_number"},
        ("unresolved_tickets", "days_since_support_ticket"),
        lambda d, p: (
            _at_least(d.number("unresolved_tickets"), p["min_tickets"])
            & _at_most(d.number("days_since_support_ticket"), p["max_days_since"])
        ),
    ),
    "no_content": Trigger(
        {"max_content_views": "number"},
        ("content_view_total",),
        lambda d, p: _at_most(d.number("content_view_total"), p["max_content_views"]),
    ),
    "at_risk": Trigger(
        {"segments": "segments"},
        ("segment",),
        lambda d, p: d.isin("segment", p["segments"], SEGMENTS),
    ),
    "overdue": Trigger(
        {"min_overdue_ratio": "number", "max_recency_days": "optional_number"},
        ("overdue_ratio", "recency_days"),
        lambda d, p: (
            _at_least(d.number("overdue_ratio"), p["min_overdue_ratio"])
            & _at_most(d.number("recency_days"), p["max_recency_days"])
        ),
    ),
    "churn_alarm": Trigger(
        {"min_recency_days": "number"},
        ("recency_days",),
        lambda d, p: _at_least(d.number("recency_days"), p["min_recency_days"]),
    ),
    "viewed_not_bought": Trigger(
        {"min_views": "number", "max_days_since_view": "optional_number"},
        ("product_views_since_purchase", "days_since_product_view"),
        lambda d, p: (
            _at_least(d.number("product_views_since_purchase"), p["min_views"])
            & _at_most(d.number("days_since_product_view"), p["max_days_since_view"])
        ),
    ),
    "order_step_up": Trigger(
        {"min_ratio": "number", "max_recency_days": "optional_number"},
        ("last_order_vs_mean", "recency_days"),
        lambda d, p: (
            _at_least(d.number("last_order_vs_mean"), p["min_ratio"])
            & _at_most(d.number("recency_days"), p["max_recency_days"])
        ),
    ),
    "low_risk": Trigger(
        {"risk_tiers": "tiers"},
        ("risk_tier",),
        lambda d, p: d.isin("risk_tier", p["risk_tiers"], TIERS),
    ),
    "notice_before_end": Trigger(
        {"min_days_left": "number"},
        ("notice_given", "days_to_noticed_end"),
        lambda d, p: (
            _at_least(d.number("notice_given"), 1.0)
            & _at_least(d.number("days_to_noticed_end"), p["min_days_left"])
        ),
        subscriptions=True,
    ),
    "payment_failed": Trigger(
        {"max_days_since": "number"},
        ("holds_term", "days_since_payment_failed", "days_since_payment_late", "recency_days"),
        _payment_failed,
        subscriptions=True,
    ),
    "trial_ending": Trigger(
        {"max_days_left": "number"},
        ("on_trial", "trial_days_left"),
        lambda d, p: (
            _at_least(d.number("on_trial"), 1.0)
            & _at_most(d.number("trial_days_left"), p["max_days_left"])
        ),
        subscriptions=True,
    ),
    "renewal_due": Trigger(
        {
            "max_days_to_renewal": "number",
            "min_billing_period_months": "optional_number",
            "min_value_at_risk": "optional_number",
        },
        ("days_to_renewal", "notice_given", "billing_period_months", "value_at_risk"),
        lambda d, p: (
            _at_most(d.number("days_to_renewal"), p["max_days_to_renewal"])
            & _at_most(d.number("notice_given"), 0.0)
            & _at_least(d.number("billing_period_months"), p["min_billing_period_months"])
            & _at_least(d.number("value_at_risk"), p["min_value_at_risk"])
        ),
        subscriptions=True,
    ),
}
"""Every trigger a policy may configure, by name. What each one tests:

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
notice_before_end       subscriptions: notice given (`notice_given` 1) and at least
                        `min_days_left` days before it takes effect (`days_to_noticed_end`).
payment_failed          subscriptions (`holds_term` known): a payment failed at most
                        `max_days_since` days ago (`days_since_payment_failed`), with no
                        `payment_late` (paid late) and no purchase (`recency_days`) after it.
trial_ending            subscriptions: on a trial (`on_trial` 1) ending within `max_days_left`
                        days (`trial_days_left`).
renewal_due             subscriptions: the plan renews within `max_days_to_renewal` days
                        (`days_to_renewal`), no notice given, a billing period of at least
                        `min_billing_period_months` and a `value_at_risk` of at least
                        `min_value_at_risk` (each null: no limit).
======================  =========================================================================
"""

DISCOUNT_COLUMNS = (
    "tenure_days",
    "n_purchase_days",
    "discount_order_share",
    "payment_late_total",
    "referral_total",
)
"""The columns the discount rule reads (see `serving.scoring.policy.apply.discount_eligible`)."""
