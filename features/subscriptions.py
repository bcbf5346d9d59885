"""Subscription features as of a date, and the coverage of terms that contractual churn reads.

A term (one row of the subscriptions table) is a billing period of one product: it covers
[start_ts, end_ts). As of T a term exists once started (start_ts < T) and a notice given at or
after T is unknown. A customer *holds a term* at T when a known term reaches T
(start_ts < T <= end_ts): a term ending exactly at T still counts, so a customer renewing at
midnight T (whose next term starts at T, unknown as of T) is a subscriber at T.

The *base term* of a customer at T is the covering term with the highest monthly rate (amount
/ months; without an amount column, or on ties, the earliest started): the plan they are on.
Other covering terms of other plans are add-ons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from features.columns import ColumnData, floats
from features.engagement import event_slug
from features.population import HOLDS_TERM
from features.rfm import (
    ID,
    US_PER_DAY,
    Codes,
    Columns,
    group_max,
    group_min,
    group_sum,
    labels,
    micros,
    ratio,
    timestamps_us,
    trend,
)

GRACE_DAYS = 7
"""A gap of at most this many days between a term's end and the next start is not a lapse."""

DAYS_PER_MONTH = 365.25 / 12
ROUNDED_FROM_DAYS = 26
RENEWAL_WINDOWS_DAYS = (30, 90)
USAGE_RECENT_DAYS, USAGE_PREVIOUS_DAYS = 30, 60
CHANGE_TOLERANCE = 0.01
"""A monthly revenue change smaller than this share is no plan change (rounding, proration)."""

_NAT_US = np.iinfo(np.int64).min


def term_months(subscriptions: ColumnData) -> np.ndarray:
    """Each term's length in months: `billing_period_months` when given (> 0), else its dates.

    From dates, a term of 26 days or more rounds to whole months (28-31 days is 1, 365 is
    12); a shorter one (a 14-day trial) stays a fraction.
    """
    days = (timestamps_us(subscriptions["end_ts"]) - timestamps_us(subscriptions["start_ts"])) / (
        US_PER_DAY
    )
    derived = days / DAYS_PER_MONTH
    derived = np.where(days >= ROUNDED_FROM_DAYS, np.maximum(np.round(derived), 1.0), derived)
    if "billing_period_months" not in subscriptions:
        return derived
    given = floats(_numbers(subscriptions["billing_period_months"]))
    return np.where(given > 0, given, derived)


def holds_term(
    subscriptions: ColumnData, customer: np.ndarray, n: int, as_of: datetime
) -> np.ndarray:
    """Whether each customer code holds a known term reaching `as_of` (start < T <= end)."""
    as_of_us = micros(as_of)
    start = timestamps_us(subscriptions["start_ts"])
    end = timestamps_us(subscriptions["end_ts"])
    covering = (start < as_of_us) & (end >= as_of_us) & (customer >= 0) & (start != _NAT_US)
    return group_sum(customer[covering], n) > 0


def lapse_blocks(
    customer: np.ndarray, start_us: np.ndarray, end_us: np.ndarray, grace_days: float
) -> np.ndarray:
    """Per term, the end of its run of coverage: terms overlapping or within the grace merged.

    A customer's terms sorted by start form a run while each starts at most `grace_days` after
    the latest end so far; the run ends at its latest end, where the subscription lapses.
    """
    frame = pd.DataFrame({"who": customer, "start": start_us, "end": end_us})
    frame = frame.sort_values(["who", "start"], kind="stable")
    reach = frame.groupby("who", sort=False)["end"].cummax()
    previous = reach.groupby(frame["who"], sort=False).shift()
    new_run = previous.isna() | (frame["start"] > previous + grace_days * US_PER_DAY)
    run = new_run.cumsum()
    run_end = frame.groupby(run, sort=False)["end"].transform("max")
    out = np.empty(len(frame), dtype=np.int64)
    out[frame.index.to_numpy()] = run_end.to_numpy()
    return out


def lapse_at(
    customer: np.ndarray,
    start_us: np.ndarray,
    end_us: np.ndarray,
    run_end_us: np.ndarray,
    n: int,
    as_of: datetime,
) -> np.ndarray:
    """Per customer code, when the coverage held at `as_of` lapses (int64 us; min: no term).

    `run_end_us` is `lapse_blocks` of the same terms (made once for many cutoffs).
    """
    as_of_us = micros(as_of)
    covering = (start_us < as_of_us) & (end_us >= as_of_us) & (customer >= 0)
    return group_max(customer[covering], n, run_end_us[covering], _NAT_US)


def subscription_features(
    subscriptions: ColumnData, codes: Mapping[str, Codes], as_of: datetime
) -> Columns:
    """Per-customer contract state from the terms known at `as_of` (start_ts < as_of).

    A notice (`cancel_ts`) at or after `as_of` is ignored. Customers without a term known at
    `as_of` get NaN everywhere; those with terms but none reaching `as_of` get
    `holds_term` 0 and NaN in the current-term columns. Columns from an optional table
    column exist only when the table has it.

    Args:
        subscriptions: the subscriptions table.
        codes: its customer_id (and plan, when it has one) as integer codes; the customer
            names are the feature table's customers, one per code.
        as_of: the cutoff.

    Output columns (days are fractional):
        holds_term: 1 if a term reaches `as_of`, else 0.
        days_to_renewal: days to the latest end of the covering terms of the base plan.
        renewal_within_30d, renewal_within_90d: 1 if that end is within 30 / 90 days.
        billing_period_months: months of the base term (`term_months`).
        subscription_tenure_days, n_terms: days since the first term began; terms so far.
        renewals: terms so far that follow an earlier term of the same plan.
        plan (amount: price), term_discount (discount), seats (quantity): of the base term.
        mrr (amount): monthly revenue of the covering terms, sum of amount / months.
        n_addons: other plans among the covering terms (no plan column: other terms).
        upgrades, downgrades, plan_changes (amount): term starts that raised / lowered the
            customer's monthly revenue by more than `CHANGE_TOLERANCE` against the terms held
            just before (a gap up to `GRACE_DAYS` bridged); first starts and restarts after a
            longer gap excluded. An add-on bought counts as an upgrade.
        notice_given, days_to_noticed_end (cancel_ts): a covering term with a notice, and
            days to the latest end of such terms.
        on_trial, trial_days_left (trial): the base term is a trial; days to its end.
    """
    n = len(codes[ID])
    as_of_us = micros(as_of)
    start_all = timestamps_us(subscriptions["start_ts"])
    who_all = codes[ID].codes
    rows = np.flatnonzero((start_all < as_of_us) & (who_all >= 0) & (start_all != _NAT_US))
    who, start = who_all[rows], start_all[rows]
    end = timestamps_us(subscriptions["end_ts"])[rows]
    months = term_months(subscriptions)[rows]
    amount = _optional(subscriptions, "amount", rows)
    monthly = np.full(rows.size, np.nan) if amount is None else amount / months
    plan = codes["plan"].codes[rows] if "plan" in codes else None

    known = group_sum(who, n) > 0
    covering = end >= as_of_us
    holds = group_sum(who[covering], n) > 0
    base = _base_terms(who, start, monthly, covering, n)
    has_base = base >= 0
    at_base = np.where(has_base, base, 0)

    def of_base(values: np.ndarray) -> np.ndarray:
        return np.where(has_base, values[at_base], np.nan) if values.size else np.full(n, np.nan)

    if plan is None:
        base_line = covering & (np.arange(rows.size) == at_base[who]) & has_base[who]
    else:
        base_line = covering & (plan == plan[at_base[who]]) & has_base[who]
    renewal_us = group_max(who[base_line], n, end[base_line], _NAT_US)
    to_renewal = np.where(has_base, (renewal_us - as_of_us) / US_PER_DAY, np.nan)
    columns: Columns = {HOLDS_TERM: np.where(known, holds.astype(np.float64), np.nan)}
    columns["days_to_renewal"] = to_renewal
    for days in RENEWAL_WINDOWS_DAYS:
        columns[f"renewal_within_{days}d"] = np.where(has_base, to_renewal < days, np.nan)
    columns["billing_period_months"] = of_base(months)
    first = group_min(who, n, start, np.iinfo(np.int64).max)
    columns["subscription_tenure_days"] = np.where(known, (as_of_us - first) / US_PER_DAY, np.nan)
    n_terms = group_sum(who, n)
    columns["n_terms"] = np.where(known, n_terms, np.nan)
    columns["renewals"] = np.where(known, _renewals(who, start, plan, n), np.nan)
    if plan is not None:
        names = codes["plan"].names
        base_plan = np.where(has_base, plan[at_base], -1) if plan.size else np.full(n, -1)
        columns["plan"] = labels(names, np.asarray(base_plan, dtype=np.int64))
    if amount is not None:
        columns["price"] = of_base(amount)
        mrr = group_sum(who[covering], n, np.nan_to_num(monthly[covering]))
        columns["mrr"] = np.where(holds, mrr, np.nan)
    for name, source in (("term_discount", "discount"), ("seats", "quantity")):
        values = _optional(subscriptions, source, rows)
        if values is not None:
            columns[name] = of_base(values)
    columns["n_addons"] = np.where(holds, _addons(who, plan, covering, at_base, n), np.nan)
    if amount is not None:
        up, down = _plan_changes(who, start, end, np.nan_to_num(monthly), n)
        columns["upgrades"] = np.where(known, up, np.nan)
        columns["downgrades"] = np.where(known, down, np.nan)
        columns["plan_changes"] = np.where(known, up + down, np.nan)
    if "cancel_ts" in subscriptions:
        cancel = timestamps_us(subscriptions["cancel_ts"])[rows]
        noticed = covering & (cancel != _NAT_US) & (cancel < as_of_us)
        columns["notice_given"] = np.where(holds, group_sum(who[noticed], n) > 0, np.nan)
        noticed_end = group_max(who[noticed], n, end[noticed], _NAT_US)
        columns["days_to_noticed_end"] = ratio(
            (noticed_end - as_of_us).astype(np.float64),
            np.full(n, float(US_PER_DAY)),
            noticed_end != _NAT_US,
        )
    if "trial" in subscriptions:
        trial = _optional(subscriptions, "trial", rows)
        assert trial is not None
        on_trial = of_base(np.nan_to_num(trial))
        columns["on_trial"] = on_trial
        base_end = np.where(has_base, end[at_base], as_of_us) if end.size else np.full(n, as_of_us)
        columns["trial_days_left"] = np.where(
            on_trial == 1, (base_end - as_of_us) / US_PER_DAY, np.nan
        )
    return {
        name: values if name == "plan" else np.asarray(values, dtype=np.float64)
        for name, values in columns.items()
    }


def usage_features(
    engagement: Mapping[str, np.ndarray], event_types: Sequence[str], seats: np.ndarray | None
) -> Columns:
    """Usage trends, per-seat rates and breadth for every event type, from `event_features`.

    Reuses its `E_30d` and `E_90d` counts (the days since each kind, `days_since_E`, are
    there already). Every name in `event_types` gets the columns, known or not.

    Output columns, for each event type E (its slug):
        E_trend_30v60: the last 30 days against the 60 before at the same daily rate,
            (recent - previous / 2) / (recent + previous / 2), in [-1, 1]; NaN if neither.
        E_30d_per_seat: E_30d / seats (with seats > 0; only when `seats` is given).
    And:
        event_breadth_30d: how many of the event types were used in the last 30 days.
    """
    columns: Columns = {}
    breadth: np.ndarray | None = None
    for event in event_types:
        slug = event_slug(event)
        recent = engagement[f"{slug}_{USAGE_RECENT_DAYS}d"]
        previous = engagement[f"{slug}_{USAGE_RECENT_DAYS + USAGE_PREVIOUS_DAYS}d"] - recent
        scale = USAGE_RECENT_DAYS / USAGE_PREVIOUS_DAYS
        columns[f"{slug}_trend_30v60"] = trend(recent, previous * scale)
        if seats is not None:
            columns[f"{slug}_30d_per_seat"] = ratio(recent, seats, seats > 0)
        used = (recent > 0).astype(np.float64)
        breadth = used if breadth is None else breadth + used
    if breadth is not None:
        columns["event_breadth_30d"] = breadth
    return columns


def _numbers(values: object) -> np.ndarray:
    """A numeric or boolean column as float64, NaN where missing."""
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    array = np.asarray(values)
    if array.dtype == object:
        return pd.array(array, dtype="Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    return array.astype(np.float64)


def _optional(frame: ColumnData, column: str, rows: np.ndarray) -> np.ndarray | None:
    return _numbers(frame[column])[rows] if column in frame else None


def _base_terms(
    who: np.ndarray, start: np.ndarray, monthly: np.ndarray, covering: np.ndarray, n: int
) -> np.ndarray:
    """Per customer code, the row of its base term among the covering ones (-1: none)."""
    rows = np.flatnonzero(covering)
    rate = np.where(np.isnan(monthly[rows]), -np.inf, monthly[rows])
    order = rows[np.lexsort((rows, start[rows], -rate, who[rows]))]
    out = np.full(n, -1, dtype=np.int64)
    ordered = who[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]] if order.size else np.zeros(0, bool)
    out[ordered[first]] = order[first]
    return out


def _renewals(who: np.ndarray, start: np.ndarray, plan: np.ndarray | None, n: int) -> np.ndarray:
    """Terms following an earlier term of the same plan (no plan column: any earlier term)."""
    line = np.zeros(who.size, dtype=np.int64) if plan is None else plan.astype(np.int64)
    order = np.lexsort((start, line, who))
    key_who, key_line = who[order], line[order]
    follows = np.r_[False, (key_who[1:] == key_who[:-1]) & (key_line[1:] == key_line[:-1])]
    follows = follows[: who.size]  # no terms: no row to follow
    return group_sum(key_who[follows], n)


def _addons(
    who: np.ndarray, plan: np.ndarray | None, covering: np.ndarray, base: np.ndarray, n: int
) -> np.ndarray:
    """Distinct other plans among the covering terms (no plan column: covering terms - 1)."""
    count = group_sum(who[covering], n)
    if plan is None:
        return np.maximum(count - 1, 0.0)
    rows = np.flatnonzero(covering)
    other = plan[rows] != plan[base[who[rows]]]
    pairs = pd.DataFrame({"who": who[rows][other], "plan": plan[rows][other]}).drop_duplicates()
    return group_sum(pairs["who"].to_numpy(), n)


def _plan_changes(
    who: np.ndarray, start: np.ndarray, end: np.ndarray, monthly: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Term starts that raised and lowered the customer's monthly revenue, counted per code.

    At a start s, revenue after it is that of the terms covering s; before it, that of the
    terms held just before s or, after a gap of at most `GRACE_DAYS`, just before the gap.
    """
    times = _distinct(np.sort(np.r_[start, end]))
    starts = _Timeline(who, start, monthly, times)
    ends = _Timeline(who, end, monthly, times)
    at = _distinct(starts.keys)  # each customer's distinct start times
    q_who = at // starts.span

    def held_before(keys: np.ndarray) -> np.ndarray:
        return starts.total(keys, inclusive=False) - ends.total(keys, inclusive=False)

    after = starts.total(at, inclusive=True) - ends.total(at, inclusive=True)
    before = held_before(at)
    gap_from = ends.latest_before(at)  # -1: no earlier end
    at_time = times[at % starts.span]
    gap_time = times[np.maximum(gap_from, 0) % starts.span]
    bridged = (gap_from >= 0) & (at_time - gap_time <= GRACE_DAYS * US_PER_DAY)
    before = np.where((np.abs(before) < 1e-12) & bridged, held_before(gap_from), before)
    scale = np.maximum(np.abs(before), np.abs(after))
    held = before > CHANGE_TOLERANCE * scale
    change = after - before
    up = held & (change > CHANGE_TOLERANCE * scale)
    down = held & (change < -CHANGE_TOLERANCE * scale)
    return group_sum(q_who[up], n), group_sum(q_who[down], n)


def _distinct(ordered: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (numpy's `unique` hashes: slower on int64)."""
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if ordered.size else ordered


class _Timeline:
    """Values at (customer, time) points, sorted once: running sums per customer by searching.

    A point's key is customer * span + the rank of its time among `times`, so one sort orders
    by customer then time, and a customer's points before a moment are one contiguous slice.
    """

    def __init__(self, who: np.ndarray, ts: np.ndarray, values: np.ndarray, times: np.ndarray):
        self.span = times.size + 1
        keys = who.astype(np.int64) * self.span + np.searchsorted(times, ts)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.running = np.r_[0.0, np.cumsum(values[order])]

    def total(self, at: np.ndarray, *, inclusive: bool) -> np.ndarray:
        """Per key, the sum of its customer's values before its time (at it too if inclusive)."""
        upto = np.searchsorted(self.keys, at, side="right" if inclusive else "left")
        first = np.searchsorted(self.keys, at // self.span * self.span, side="left")
        return self.running[upto] - self.running[first]

    def latest_before(self, at: np.ndarray) -> np.ndarray:
        """Per key, the key of its customer's latest point strictly before it (-1 if none)."""
        below = np.searchsorted(self.keys, at, side="left") - 1
        found = self.keys[np.maximum(below, 0)] if self.keys.size else np.zeros(at.size, np.int64)
        same = (below >= 0) & (found // self.span == at // self.span)
        return np.where(same, found, -1)
