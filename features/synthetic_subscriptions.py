"""Synthetic subscription (B2B software) tables: terms, payments, usage and churn at renewal.

The world, each number a constant below or a parameter of `generate_subscription_tables`:

- **Accounts** sign up over the whole period (growing acquisition), so at any date there are
  subscribers of every tenure. Each has a company size (`segment`: solo, small, medium, large,
  which sets its seats), an acquisition channel and a region.
- **Plans** basic / pro / enterprise cost 12 / 29 / 59 a seat a month at list (10% more after
  a list-price rise 55% into the period) and are priced for a usage of 0.55 / 1.2 / 2.2 times
  `events_per_seat` usage events a seat a month, with limits at 1 / 2.5 / 8 times it.
  Billing is monthly, 6-monthly (8% off) or annual (15% off); a quarter of accounts get a
  20-30% promotion for their first year. `discount` is the total share off list and `amount`
  the price of the whole term (a month is 365.25 / 12 days).
- **Add-ons** (`addon_analytics`, flat; `addon_sso`, per seat) are terms of their own, with the
  start, end and billing period of the base plan's term.
- **Trials** (`trial_share` of new accounts, 14 or 30 days, amount 0, `billing_period_months` 1):
  conversion follows trial usage and satisfaction; most who do not convert lapse, some switch
  renewal off first (`cancel_ts`).
- **Usage** per seat follows a mean-reverting random walk around the account's own level
  (`login`, `report_run`, `api_call` (pro and enterprise), `export`, in account-specific
  shares); `seat_invite` marks seats added at a renewal. An account logs `events_per_seat`
  times seats ** 0.6 (big teams have idle seats) times its usage level events a month, as
  Poisson counts: small accounts' counts are noisy. The default gives about 160 events an
  account over 3 years; at a million accounts `events_per_seat=0.5` (about 47 an account)
  keeps the run near 5 GB and under two minutes. Satisfaction is a second random walk, seen
  through `support_ticket` (mostly followed by `ticket_resolved`), `complaint` and `nps`
  (value 0-10); help-centre views (`content_view`) grow with satisfaction.
- **Churn is decided at renewal**, never between renewals: a logistic utility of usage per
  seat against what the plan is priced for, its trend over the term, satisfaction, the price
  change at renewal (a promotion ending, the list-price rise) times the account's price
  sensitivity, company size, channel, add-ons, the first paid renewal and hitting a plan
  limit. `acausal_churn` of the voluntary churn strikes at random, foreshadowed by nothing.
  Half of the voluntary churners give notice (`cancel_ts`) days to months before the end of
  their last term; 60% of the behavioural ones use the product at a quarter of their rate in
  its last 60 days, the others give no such warning.
  Plans go up at a renewal when usage exceeds the limit and down when it is far below.
- **Payments**: one transaction per paid term (base and add-ons share an `order_id`), dated
  when paid. Some renewals' payments fail (`payment_failed`, value = amount due; accounts
  differ in how often): most are recovered within days (`payment_late`, paid late), the rest
  end the subscription (involuntary churn). 8% of the behavioural churners come back months later.

Every timestamp but a term's scheduled `end_ts` is before `end`; a notice given after `end`
is not in the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from features.schema import CUSTOMERS, EVENTS, SUBSCRIPTIONS, TRANSACTIONS, Tables
from features.synthetic import sequential_ids
from features.synthetic_world import (
    DAY_SECONDS,
    DAYS_PER_MONTH,
    DAYS_PER_YEAR,
    BoolArray,
    FloatArray,
    IntArray,
    strings,
)

SUBSCRIPTION_COLUMNS = SUBSCRIPTIONS.column_names

SEGMENTS = ("solo", "small", "medium", "large")

SEGMENT_SHARES = np.array([0.30, 0.38, 0.22, 0.10])

# Seats at signup, drawn log-uniformly between these bounds (inclusive) per segment.
SEATS_RANGE = np.array([[1, 1], [2, 5], [6, 20], [21, 100]], dtype=np.float64)

CHANNELS = ("organic", "paid_search", "partner", "sales", "referral")

CHANNEL_BY_SEGMENT = np.array(
    [
        [0.45, 0.35, 0.05, 0.00, 0.15],
        [0.40, 0.30, 0.10, 0.05, 0.15],
        [0.30, 0.20, 0.15, 0.20, 0.15],
        [0.15, 0.05, 0.15, 0.55, 0.10],
    ]
)

REGIONS = ("north_america", "europe", "apac", "latam")

REGION_SHARES = np.array([0.45, 0.32, 0.15, 0.08])

PLANS = ("basic", "pro", "enterprise")

PLAN_BY_SEGMENT = np.array(
    [[0.75, 0.25, 0.00], [0.50, 0.45, 0.05], [0.25, 0.55, 0.20], [0.05, 0.40, 0.55]]
)

PLAN_PRICE = np.array([12.0, 29.0, 59.0])
"""List price a seat a month."""

PLAN_TYPICAL_USE = np.array([0.55, 1.2, 2.2])
"""Usage a seat a month the plan is priced for, in units of `events_per_seat`."""

PLAN_LIMIT = np.array([1.0, 2.5, 8.0])
"""Usage a seat a month the plan allows, in units of `events_per_seat`."""

PRICE_RISE = 0.10
PRICE_RISE_AT = 0.55
"""List prices rise by PRICE_RISE at this share of the period."""

BILLING_MONTHS = np.array([1, 6, 12])

BILLING_DISCOUNT = np.array([0.0, 0.08, 0.15])

BILLING_BY_PLAN = np.array([[0.75, 0.10, 0.15], [0.55, 0.15, 0.30], [0.15, 0.10, 0.75]])

PROMO_SHARE = 0.25
PROMO_FRACTIONS = np.array([0.2, 0.3])
PROMO_DAYS = 365.0

ADDONS = ("addon_analytics", "addon_sso")
ADDON_PRICE = np.array([49.0, 4.0])
"""A month: analytics is flat (quantity 1), SSO is per seat."""
ADDON_PER_SEAT = np.array([False, True])
ADDON_RATE_PER_YEAR = np.array([[0.02, 0.15, 0.25], [0.0, 0.10, 0.35]])
"""Yearly rate of adding each add-on (rows) by plan (columns)."""
ADDON_DROP_PER_YEAR = 0.15

TRIAL_SHARE_BY_SEGMENT = np.array([1.3, 1.1, 0.8, 0.3])
"""Times `trial_share`, so that small accounts try first and large ones buy through sales."""
TRIAL_DAYS = np.array([14.0, 30.0])

SEAT_ELASTICITY = 0.6
"""An account's usage events grow as seats ** SEAT_ELASTICITY: big teams have idle seats."""

USAGE_EVENTS = ("login", "report_run", "api_call", "export")
USAGE_SHARE_ALPHA = np.array([6.0, 3.0, 2.5, 1.5])

# Latent usage (log, per seat) and satisfaction follow Ornstein-Uhlenbeck walks: mean
# reversion time (days) and stationary spread.
USAGE_TAU, USAGE_SIGMA, USAGE_LEVEL_SIGMA = 120.0, 0.6, 0.55
SATISFACTION_TAU, SATISFACTION_SIGMA, SATISFACTION_LEVEL_SIGMA = 200.0, 0.8, 0.5

TICKETS_PER_MONTH = 0.06
COMPLAINT_PROB = 0.35
RESOLVED_PROB, RESOLVE_MEAN_DAYS = 0.85, 2.0
"""Most tickets are resolved within days; the satisfied accounts' more often."""
HELP_VIEWS_PER_MONTH = 0.4
"""Help-centre article views (`content_view`) per account and month, more by the engaged."""
NPS_PER_YEAR = 3.0
NPS_MEAN, NPS_SLOPE, NPS_NOISE = 7.3, 1.3, 1.5

# Logit of voluntary churn at a paid renewal.
CHURN_BASE = np.array([-6.8, -5.2, -4.5])
"""By billing period (monthly, 6-month, annual), at average traits."""
CHURN_PER_USE = -2.4
"""Per unit of log usage per seat against the plan's typical use."""
CHURN_PER_TREND = -1.5
"""Per unit of log usage change over the term, for a 90-day term (scaled by sqrt of length)."""
CHURN_PER_SATISFACTION = -0.8
CHURN_PER_PRICE = 3.0
"""Per unit of log price change at the renewal, times the account's price sensitivity."""
CHURN_BY_SEGMENT = np.array([0.45, 0.2, 0.0, -0.35])
CHURN_BY_CHANNEL = np.array([0.0, 0.3, 0.0, -0.1, -0.3])
CHURN_FIRST_RENEWAL = 0.5
CHURN_ADDON = -0.35
CHURN_OVER_LIMIT = 0.4

TRIAL_CONVERSION_BASE = -0.3
TRIAL_CONVERSION_PER_USE = 1.0
TRIAL_CONVERSION_PER_SATISFACTION = 0.5
TRIAL_SWITCH_OFF = 0.35
"""Share of non-converting trials that switch renewal off before the trial ends."""

NOTICE_SHARE = 0.5
NOTICE_MAX_DAYS = np.array([25.0, 60.0, 90.0])
DECLINE_SHARE, DECLINE_DAYS, DECLINE_KEEP = 0.6, 60.0, 0.25

FAILURE_PROB = np.array([0.006, 0.04])
"""Per payment, for ordinary accounts and for the RISKY_PAYER_SHARE with fragile cards."""
RISKY_PAYER_SHARE = np.array([0.15, 0.2, 0.25, 0.1])
"""By segment."""
RECOVERY_PROB, RECOVERY_MEAN_DAYS, RECOVERY_MAX_DAYS = 0.7, 3.0, 14.0

COMEBACK_PROB, COMEBACK_MIN_DAYS, COMEBACK_MEAN_DAYS = 0.08, 30.0, 150.0

UPGRADE_PROB, DOWNGRADE_PROB, DOWNGRADE_BELOW = 0.5, 0.25, 0.35
ANNUAL_SWITCH_PER_YEAR = 0.08

EVENT_NAMES = (
    *USAGE_EVENTS,
    "seat_invite",
    "support_ticket",
    "complaint",
    "nps",
    "payment_failed",
    "payment_late",
    "ticket_resolved",
    "content_view",
)
EVENT_CODE = {name: code for code, name in enumerate(EVENT_NAMES)}


@dataclass(frozen=True)
class _Accounts:
    """Per-account traits fixed at signup; time is in days since the start of the period."""

    signup: FloatArray
    segment: IntArray
    channel: IntArray
    region: IntArray
    plan: IntArray
    months: IntArray
    seats: FloatArray
    trial: BoolArray
    trial_days: FloatArray
    promo: FloatArray
    usage_level: FloatArray
    satisfaction_level: FloatArray
    price_sensitivity: FloatArray
    failure_prob: FloatArray
    usage_shares: FloatArray


@dataclass
class _Columns:
    """Arrays gathered step by step, concatenated once per name."""

    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, **columns: np.ndarray) -> None:
        """Append one step's arrays."""
        for name, values in columns.items():
            self.parts.setdefault(name, []).append(values)

    def get(self, name: str) -> np.ndarray:
        """One column over every step."""
        return np.concatenate(self.parts[name])

    def take(self, name: str) -> np.ndarray:
        """One column over every step, dropping its parts (at a million accounts, gigabytes)."""
        return np.concatenate(self.parts.pop(name))


@dataclass
class _Events:
    """Events without a value apart from those with one, so usage rows carry no value array."""

    plain: _Columns = field(default_factory=_Columns)
    valued: _Columns = field(default_factory=_Columns)


def generate_subscription_tables(
    n_customers: int,
    seed: int = 0,
    end: pd.Timestamp | str = "2026-11-01",
    years: float = 3.0,
    *,
    events_per_seat: float = 2.0,
    acausal_churn: float = 0.3,
    trial_share: float = 0.45,
) -> Tables:
    """Generate a synthetic subscription business (see the module docstring for its world).

    Args:
        n_customers: Number of accounts; each has at least one subscription term.
        seed: Seed of `numpy.random.default_rng`; the same seed gives identical tables.
        end: Exclusive end of the data period: every timestamp but a scheduled `end_ts` is
            before it.
        years: Length of the data period before `end`, in years.
        events_per_seat: Usage events a month of a one-seat account at a usage level of 1,
            the unit of the plans' limits; the number of events grows in proportion.
        acausal_churn: Share of the voluntary churn drawn at random at renewals, in [0, 1).
        trial_share: Share of new accounts (before the size adjustment) starting on a trial,
            in [0, 0.75].

    Returns:
        `subscriptions` (one row per term of the base plan or an add-on), `transactions`
        (one per paid term), `customers` and `events`; ids and labels of pandas `str` dtype,
        naive UTC `datetime64[us]` timestamps, float64 numbers, `billing_period_months` int64
        and `trial` bool. Rows of subscriptions, transactions and events are shuffled.

    Raises:
        ValueError: If `n_customers` < 1, `years` <= 0 or a parameter is out of range.
    """
    if n_customers < 1:
        raise ValueError(f"n_customers must be at least 1, got {n_customers}")
    if not (np.isfinite(years) and years > 0):
        raise ValueError(f"years must be positive, got {years}")
    if not (np.isfinite(events_per_seat) and events_per_seat > 0):
        raise ValueError(f"events_per_seat must be positive, got {events_per_seat}")
    if not 0 <= acausal_churn < 1:
        raise ValueError(f"acausal_churn must be in [0, 1), got {acausal_churn}")
    if not 0 <= trial_share <= 0.75:
        raise ValueError(f"trial_share must be in [0, 0.75], got {trial_share}")
    end_ts = pd.Timestamp(end)
    if end_ts.tzinfo is not None:
        end_ts = end_ts.tz_convert("UTC").tz_localize(None)
    seconds = round(years * DAYS_PER_YEAR * DAY_SECONDS)
    start_us = end_ts.value // 1000 - seconds * 1_000_000
    days = seconds / DAY_SECONDS

    rng = np.random.default_rng(seed)
    accounts = _draw_accounts(rng, n_customers, days, trial_share)
    terms, events = _simulate(rng, accounts, days, acausal_churn, events_per_seat)
    customer_ids = sequential_ids("C", n_customers)
    stamp = _Stamper(start_us, seconds)
    subscriptions = _subscriptions_frame(rng, terms, customer_ids, stamp)
    transactions = _transactions_frame(rng, terms, customer_ids, stamp, days)
    events_frame = _events_frame(rng, events, customer_ids, stamp, days)
    return Tables(
        transactions=transactions,
        customers=pd.DataFrame(
            {
                "customer_id": strings(customer_ids, np.arange(n_customers)),
                "signup_ts": stamp(accounts.signup),
                "segment": strings(pa.array(SEGMENTS), accounts.segment),
                "acquisition_channel": strings(pa.array(CHANNELS), accounts.channel),
                "region": strings(pa.array(REGIONS), accounts.region),
            }
        )[CUSTOMERS.column_names],
        events=events_frame,
        subscriptions=subscriptions,
    )


@dataclass(frozen=True)
class _Stamper:
    """Days since the start of the period to naive UTC `datetime64[us]`, floored to the second."""

    start_us: int
    seconds: int

    def __call__(self, t: FloatArray, clip: bool = True) -> pd.DatetimeIndex:
        seconds = np.floor(np.asarray(t) * DAY_SECONDS)
        if clip:
            np.minimum(seconds, self.seconds - 1, out=seconds)
        micros = seconds.astype(np.int64)
        del seconds
        micros *= 1_000_000
        micros += self.start_us
        return pd.DatetimeIndex(micros.view("datetime64[us]"), copy=False)


def _by_group(rng: np.random.Generator, groups: IntArray, table: FloatArray) -> IntArray:
    """One categorical draw per row with the probabilities of its group's row of `table`."""
    cumulative = np.cumsum(table / table.sum(axis=1, keepdims=True), axis=1)[groups]
    u = rng.random(groups.size)
    return np.minimum((u[:, None] >= cumulative).sum(axis=1), table.shape[1] - 1)


def _draw_accounts(rng: np.random.Generator, n: int, days: float, trial_share: float) -> _Accounts:
    """Signup times (growing acquisition, sorted so ids follow signup) and traits."""
    growth = 0.8
    u = np.sort(rng.random(n))
    signup = np.log1p(u * np.expm1(growth)) / growth * days
    signup = np.minimum(signup, np.nextafter(days, 0))
    segment = rng.choice(len(SEGMENTS), size=n, p=SEGMENT_SHARES)
    channel = _by_group(rng, segment, CHANNEL_BY_SEGMENT)
    region = rng.choice(len(REGIONS), size=n, p=REGION_SHARES)
    plan = _by_group(rng, segment, PLAN_BY_SEGMENT)
    months = BILLING_MONTHS[_by_group(rng, plan, BILLING_BY_PLAN)]
    low, high = np.log(SEATS_RANGE[segment, 0]), np.log(SEATS_RANGE[segment, 1] + 1)
    seats = np.floor(np.exp(rng.uniform(low, high)))
    trial_prob = np.clip(trial_share * TRIAL_SHARE_BY_SEGMENT[segment], 0.0, 1.0)
    trial = rng.random(n) < trial_prob
    promo = np.where(rng.random(n) < PROMO_SHARE, rng.choice(PROMO_FRACTIONS, n), 0.0)
    risky = rng.random(n) < RISKY_PAYER_SHARE[segment]
    alpha = np.broadcast_to(USAGE_SHARE_ALPHA, (n, len(USAGE_EVENTS)))
    shares = rng.gamma(alpha)
    return _Accounts(
        signup=signup,
        segment=segment,
        channel=channel,
        region=region,
        plan=plan,
        months=months,
        seats=seats,
        trial=trial,
        trial_days=rng.choice(TRIAL_DAYS, n, p=[0.6, 0.4]),
        promo=promo,
        usage_level=np.log(PLAN_TYPICAL_USE[plan]) + rng.normal(0.0, USAGE_LEVEL_SIGMA, n),
        satisfaction_level=rng.normal(0.0, SATISFACTION_LEVEL_SIGMA, n),
        price_sensitivity=rng.lognormal(-0.125, 0.5, n),
        failure_prob=FAILURE_PROB[risky.astype(np.int64)],
        usage_shares=shares / shares.sum(axis=1, keepdims=True),
    )


def _walk(
    rng: np.random.Generator,
    x: FloatArray,
    level: FloatArray,
    dt: FloatArray,
    tau: float,
    sigma: float,
) -> FloatArray:
    """One step of an Ornstein-Uhlenbeck walk of stationary spread `sigma` over `dt` days."""
    decay = np.exp(-dt / tau)
    return (
        level + (x - level) * decay + sigma * np.sqrt(1.0 - decay**2) * rng.standard_normal(x.size)
    )


def _sigmoid(z: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-z))


def _list_price(plan: IntArray, start: FloatArray, days: float) -> FloatArray:
    """List price a seat a month at a term's start."""
    return PLAN_PRICE[plan] * np.where(start >= PRICE_RISE_AT * days, 1.0 + PRICE_RISE, 1.0)


def _simulate(
    rng: np.random.Generator,
    accounts: _Accounts,
    days: float,
    acausal_churn: float,
    events_per_seat: float,
) -> tuple[_Columns, _Events]:
    """Terms one renewal at a time for every account at once, with their events.

    Each pass of the loop takes the accounts whose next term starts before the end of the
    period, draws that term, what happens during it and the decision at its end; the number of
    passes is the largest number of terms an account has (about 40 in 3 years), not the
    number of accounts.
    """
    n = accounts.signup.size
    pending = np.ones(n, dtype=bool)
    next_start = accounts.signup.copy()
    next_trial = accounts.trial.copy()
    next_pay_delay = np.zeros(n)
    plan = accounts.plan.copy()
    months = accounts.months.copy()
    seats = accounts.seats.copy()
    addon = np.zeros((n, len(ADDONS)), dtype=bool)
    usage = accounts.usage_level + rng.normal(0.0, USAGE_SIGMA, n)
    satisfaction = accounts.satisfaction_level + rng.normal(0.0, SATISFACTION_SIGMA, n)
    paid_terms = np.zeros(n, dtype=np.int64)
    promo_until = accounts.signup + np.where(accounts.trial, accounts.trial_days, 0.0) + PROMO_DAYS
    terms, events = _Columns(), _Events()

    while True:
        idx = np.flatnonzero(pending & (next_start < days))
        if idx.size == 0:
            break
        m = idx.size
        start = next_start[idx]
        trial = next_trial[idx]
        term_plan, term_seats = plan[idx], seats[idx]
        term_months = np.where(trial, 1, months[idx])
        length = np.where(trial, accounts.trial_days[idx], term_months * DAYS_PER_MONTH)
        stop = start + length
        use0 = usage[idx]
        use1 = _walk(rng, use0, accounts.usage_level[idx], length, USAGE_TAU, USAGE_SIGMA)
        sat1 = _walk(
            rng,
            satisfaction[idx],
            accounts.satisfaction_level[idx],
            length,
            SATISFACTION_TAU,
            SATISFACTION_SIGMA,
        )
        billing = np.searchsorted(BILLING_MONTHS, term_months)
        promo = np.where(start < promo_until[idx], accounts.promo[idx], 0.0)
        discount = 1.0 - (1.0 - BILLING_DISCOUNT[billing]) * (1.0 - promo)
        unit = _list_price(term_plan, start, days) * term_months
        amount = np.where(trial, 0.0, np.round(unit * term_seats * (1.0 - discount), 2))
        discount = np.where(trial, 1.0, discount)
        has_addon = addon[idx] & ~trial[:, None]

        # The decision at the end of the term.
        relative_use = use1 - np.log(PLAN_TYPICAL_USE[term_plan])
        over_limit = np.exp(use1) > PLAN_LIMIT[term_plan]
        trend = (use1 - use0) * np.sqrt(90.0 / length)
        next_promo = np.where(stop < promo_until[idx], accounts.promo[idx], 0.0)
        price_change = np.log(
            _list_price(term_plan, stop, days)
            * (1.0 - next_promo)
            / (_list_price(term_plan, start, days) * (1.0 - promo))
        )
        segment, channel = accounts.segment[idx], accounts.channel[idx]
        z = (
            CHURN_BASE[billing]
            + CHURN_PER_USE * relative_use
            + CHURN_PER_TREND * trend
            + CHURN_PER_SATISFACTION * sat1
            + CHURN_PER_PRICE * accounts.price_sensitivity[idx] * price_change
            + CHURN_BY_SEGMENT[segment]
            + CHURN_BY_CHANNEL[channel]
            + np.where(paid_terms[idx] == 0, CHURN_FIRST_RENEWAL, 0.0)
            + np.where(has_addon.any(axis=1), CHURN_ADDON, 0.0)
            + np.where(over_limit & (term_plan < 2), CHURN_OVER_LIMIT, 0.0)
        )
        behavioural_prob = _sigmoid(z)
        acausal_prob = np.zeros(m)
        for b in range(len(BILLING_MONTHS)):
            group = ~trial & (billing == b)
            if group.any() and acausal_churn > 0:
                # Acausal exits make about `acausal_churn` of the voluntary churn of the group.
                mean = float(behavioural_prob[group].mean())
                acausal_prob[group] = min(acausal_churn / (1.0 - acausal_churn) * mean, 0.5)
        convert = _sigmoid(
            TRIAL_CONVERSION_BASE
            + TRIAL_CONVERSION_PER_USE * relative_use
            + TRIAL_CONVERSION_PER_SATISFACTION * sat1
            - CHURN_BY_CHANNEL[channel]
        )
        behavioural = np.where(trial, rng.random(m) >= convert, rng.random(m) < behavioural_prob)
        acausal = ~behavioural & (rng.random(m) < acausal_prob)
        voluntary = behavioural | acausal
        failed = ~voluntary & (rng.random(m) < accounts.failure_prob[idx])
        recovered = failed & (rng.random(m) < RECOVERY_PROB)
        involuntary = failed & ~recovered
        delay = np.where(
            recovered,
            np.minimum(1.0 + rng.exponential(RECOVERY_MEAN_DAYS, m), RECOVERY_MAX_DAYS),
            0.0,
        )

        notice_max = np.minimum(np.where(trial, length, NOTICE_MAX_DAYS[billing]), length - 1.0)
        notice_share = np.where(trial, TRIAL_SWITCH_OFF, NOTICE_SHARE)
        gives_notice = voluntary & (rng.random(m) < notice_share)
        cancel = np.where(
            gives_notice, stop - rng.uniform(1.0, np.maximum(notice_max, 1.0)), np.nan
        )
        cancel = np.where(cancel < days, cancel, np.nan)
        declining = behavioural & ~trial & (rng.random(m) < DECLINE_SHARE)

        terms.add(
            customer=idx,
            start=start,
            stop=stop,
            plan=term_plan,
            months=term_months,
            seats=term_seats,
            discount=discount,
            amount=amount,
            cancel=cancel,
            trial=trial,
            pay_delay=next_pay_delay[idx],
            addon=has_addon,
            unit_addon=ADDON_PRICE[None, :]
            * np.where(ADDON_PER_SEAT[None, :], term_seats[:, None], 1.0)
            * term_months[:, None]
            * (1.0 - discount[:, None]),
        )
        _term_events(
            rng,
            events,
            accounts,
            idx,
            start,
            stop,
            use0,
            use1,
            sat1,
            term_seats,
            term_plan,
            declining,
            days,
            events_per_seat,
        )
        paid = ~trial & (start + next_pay_delay[idx] < days)

        # The next term: renewed (perhaps changed), a comeback after a gap, or none.
        renew = ~voluntary & ~involuntary
        comeback = behavioural & ~trial & (rng.random(m) < COMEBACK_PROB)
        up = renew & ~trial & over_limit & (term_plan < 2) & (rng.random(m) < UPGRADE_PROB)
        down = (
            renew
            & ~trial
            & (np.exp(use1) < DOWNGRADE_BELOW * PLAN_TYPICAL_USE[term_plan])
            & (term_plan > 0)
            & (rng.random(m) < DOWNGRADE_PROB)
        )
        new_plan = np.where(up, term_plan + 1, np.where(down, term_plan - 1, term_plan))
        grows = np.exp(
            rng.normal(0.03 * term_months, 0.08 * np.sqrt(term_months)) + 0.1 * (use1 - use0)
        )
        new_seats = np.where(
            accounts.segment[idx] == 0, 1.0, np.maximum(1.0, np.round(term_seats * grows))
        )
        new_seats = np.where(trial | ~renew, term_seats, new_seats)
        added = np.flatnonzero(renew & (new_seats > term_seats) & (stop < days))
        invites = np.minimum(new_seats[added] - term_seats[added], 20).astype(np.int64)
        invite_c = np.repeat(idx[added], invites)
        invite_t = np.repeat(stop[added], invites) + rng.uniform(0.0, 5.0, invite_c.size)
        _add(events, "seat_invite", invite_c, invite_t)

        conversion_months = BILLING_MONTHS[_by_group(rng, term_plan, BILLING_BY_PLAN)]
        switch = (
            renew
            & ~trial
            & (term_months < 12)
            & (rng.random(m) < 1.0 - np.exp(-ANNUAL_SWITCH_PER_YEAR * length / DAYS_PER_YEAR))
        )
        new_months = np.where(trial, conversion_months, np.where(switch, 12, term_months))
        new_months = np.where(comeback, 1, new_months)

        years_ahead = (length / DAYS_PER_YEAR)[:, None]
        add_rate = ADDON_RATE_PER_YEAR[:, new_plan].T
        gain = rng.random((m, len(ADDONS))) < 1.0 - np.exp(-add_rate * years_ahead)
        keep = rng.random((m, len(ADDONS))) >= 1.0 - np.exp(-ADDON_DROP_PER_YEAR * years_ahead)
        new_addon = np.where(addon[idx], keep, gain) & renew[:, None]
        new_addon[:, 0] &= new_plan > 0

        next_billing = np.searchsorted(BILLING_MONTHS, new_months)
        owed = (
            _list_price(new_plan, stop, days)
            * new_months
            * new_seats
            * (1.0 - BILLING_DISCOUNT[next_billing])
            * (1.0 - np.where(stop < promo_until[idx], accounts.promo[idx], 0.0))
        )
        _payment_events(rng, events, idx, stop, np.flatnonzero(failed), recovered, delay, owed)

        gap = COMEBACK_MIN_DAYS + rng.exponential(COMEBACK_MEAN_DAYS, m)
        next_start[idx] = np.where(comeback & ~renew, stop + gap, stop)
        pending[idx] = renew | comeback
        next_trial[idx] = False
        next_pay_delay[idx] = delay
        plan[idx] = new_plan
        months[idx] = new_months
        seats[idx] = new_seats
        addon[idx] = new_addon
        usage[idx] = np.where(
            comeback & ~renew,
            accounts.usage_level[idx] + rng.normal(0.0, USAGE_SIGMA, m),
            use1,
        )
        satisfaction[idx] = sat1
        paid_terms[idx] = np.where(comeback & ~renew, 0, paid_terms[idx] + paid)
        promo_until[idx] = np.where(comeback & ~renew, -np.inf, promo_until[idx])
    return terms, events


def _linear_times(
    rng: np.random.Generator, a: FloatArray, b: FloatArray, counts: IntArray
) -> FloatArray:
    """Fractions of a term for events of an intensity going linearly from `a` to `b`."""
    u = rng.random(int(counts.sum()))
    a, b = np.repeat(a, counts), np.repeat(b, counts)
    # Inverse of the cumulative intensity, in a form that stays exact as b approaches a.
    return (a + b) * u / (np.sqrt(a * a + (b * b - a * a) * u) + a)


def _term_events(
    rng: np.random.Generator,
    events: _Events,
    accounts: _Accounts,
    idx: IntArray,
    start: FloatArray,
    stop: FloatArray,
    use0: FloatArray,
    use1: FloatArray,
    sat1: FloatArray,
    seats: FloatArray,
    plan: IntArray,
    declining: BoolArray,
    days: float,
    events_per_seat: float,
) -> None:
    """Usage, support and survey events of one term, cut at the end of the period."""
    seen = np.clip((days - start) / (stop - start), 0.0, 1.0)
    a = np.exp(use0)
    b_full = np.exp(use1)
    b = a + (b_full - a) * seen
    span = (stop - start) * seen
    rate = events_per_seat * seats**SEAT_ELASTICITY / DAYS_PER_MONTH
    counts = rng.poisson(rate * 0.5 * (a + b) * span)
    row = np.repeat(np.arange(idx.size), counts)
    t = start[row] + _linear_times(rng, a, b, counts) * span[row]
    fading = declining[row] & (t > stop[row] - DECLINE_DAYS)
    kept = ~fading | (rng.random(row.size) < DECLINE_KEEP)
    row, t = row[kept], t[kept]
    customer = idx[row]
    shares = accounts.usage_shares
    no_api = plan[row] == 0
    total = np.where(no_api, 1.0 - shares[customer, 2], 1.0)
    u = rng.random(row.size) * total
    first = shares[customer, 0]
    second = first + shares[customer, 1]
    third = second + np.where(no_api, 0.0, shares[customer, 2])
    code = (u >= first).astype(np.int8) + (u >= second) + (u >= third)
    events.plain.add(customer=customer.astype(np.int32), t=t, code=np.minimum(code, 3))

    # Support and surveys, rarer and driven by satisfaction at the term's end.
    tickets = rng.poisson(
        TICKETS_PER_MONTH * np.sqrt(seats) * np.exp(-0.7 * sat1) * span / DAYS_PER_MONTH
    )
    row = np.repeat(np.arange(idx.size), tickets)
    t = start[row] + rng.random(row.size) * span[row]
    _add(events, "support_ticket", idx[row], t)
    complain = rng.random(row.size) < COMPLAINT_PROB * _sigmoid(-2.0 * sat1[row] - 2.0)
    c_t = t[complain] + rng.exponential(4.0, int(complain.sum()))
    _add(events, "complaint", idx[row[complain]], c_t)
    lift = _sigmoid(1.5 + sat1[row]) * (1.0 + np.exp(-1.5))  # 1 at average satisfaction
    resolved = rng.random(row.size) < RESOLVED_PROB * lift
    r_t = t[resolved] + rng.exponential(RESOLVE_MEAN_DAYS, int(resolved.sum()))
    _add(events, "ticket_resolved", idx[row[resolved]], r_t)
    views = rng.poisson(HELP_VIEWS_PER_MONTH * np.exp(0.5 * sat1) * span / DAYS_PER_MONTH)
    row = np.repeat(np.arange(idx.size), views)
    _add(events, "content_view", idx[row], start[row] + rng.random(row.size) * span[row])
    surveys = rng.poisson(NPS_PER_YEAR * span / DAYS_PER_YEAR)
    row = np.repeat(np.arange(idx.size), surveys)
    t = start[row] + rng.random(row.size) * span[row]
    score = np.clip(np.rint(rng.normal(NPS_MEAN + NPS_SLOPE * sat1[row], NPS_NOISE)), 0, 10)
    _add(events, "nps", idx[row], t, score)


def _payment_events(
    rng: np.random.Generator,
    events: _Events,
    idx: IntArray,
    stop: FloatArray,
    failure_at: IntArray,
    recovered: BoolArray,
    delay: FloatArray,
    owed: FloatArray,
) -> None:
    """A failed renewal payment, its retries (three tries when never recovered), a late payment."""
    tries = np.where(recovered[failure_at], 1, 3)
    row = np.repeat(failure_at, tries)
    attempt = np.arange(row.size) - np.repeat(np.cumsum(tries) - tries, tries)
    t = stop[row] + attempt * 3.0 + rng.uniform(0.0, 0.5, row.size)
    _add(events, "payment_failed", idx[row], t, np.round(owed[row], 2))
    late = failure_at[recovered[failure_at]]
    _add(events, "payment_late", idx[late], stop[late] + delay[late], np.round(owed[late], 2))


def _add(
    events: _Events,
    name: str,
    customer: IntArray,
    t: FloatArray,
    value: FloatArray | None = None,
) -> None:
    """Append events of one name (value missing when None)."""
    code = np.full(customer.size, EVENT_CODE[name], dtype=np.int8)
    if value is None:
        events.plain.add(customer=customer.astype(np.int32), t=t, code=code)
    else:
        events.valued.add(customer=customer.astype(np.int32), t=t, code=code, value=value)


def _subscriptions_frame(
    rng: np.random.Generator, terms: _Columns, customer_ids: pa.Array, stamp: _Stamper
) -> pd.DataFrame:
    """One row per base-plan term and per add-on term, in a shuffled order."""
    customer = terms.get("customer")
    addon = terms.get("addon")
    term_row, addon_kind = np.nonzero(addon)
    row = np.concatenate([np.arange(customer.size), term_row])
    plan = np.concatenate([terms.get("plan"), len(PLANS) + addon_kind])
    seats = terms.get("seats")[row]
    quantity = np.where(
        np.concatenate([np.zeros(customer.size, bool), ~ADDON_PER_SEAT[addon_kind]]), 1.0, seats
    )
    amount = np.concatenate(
        [terms.get("amount"), np.round(terms.get("unit_addon")[term_row, addon_kind], 2)]
    )
    shuffle = rng.permutation(row.size)
    row, plan, quantity, amount = row[shuffle], plan[shuffle], quantity[shuffle], amount[shuffle]
    cancel = terms.get("cancel")[row]
    cancel_ts = stamp(np.nan_to_num(cancel, nan=0.0)).to_numpy().copy()
    cancel_ts[np.isnan(cancel)] = np.datetime64("NaT")
    return pd.DataFrame(
        {
            "customer_id": strings(customer_ids, customer[row]),
            "start_ts": stamp(terms.get("start")[row]),
            "end_ts": stamp(terms.get("stop")[row], clip=False),
            "plan": strings(pa.array([*PLANS, *ADDONS]), plan),
            "amount": amount,
            "billing_period_months": terms.get("months")[row].astype(np.int64),
            "discount": np.round(terms.get("discount")[row], 4),
            "quantity": quantity.astype(np.float64),
            "cancel_ts": pd.DatetimeIndex(cancel_ts),
            "trial": terms.get("trial")[row],
        }
    )[SUBSCRIPTION_COLUMNS]


def _transactions_frame(
    rng: np.random.Generator,
    terms: _Columns,
    customer_ids: pa.Array,
    stamp: _Stamper,
    days: float,
) -> pd.DataFrame:
    """One payment per paid term of the base plan and of each add-on, dated when paid."""
    paid_at = terms.get("start") + terms.get("pay_delay")
    invoice = np.flatnonzero(~terms.get("trial") & (paid_at < days))
    # Invoice numbers follow payment time, as an invoice counter would.
    invoice = invoice[np.argsort(paid_at[invoice], kind="stable")]
    addon = terms.get("addon")[invoice]
    invoice_no, addon_kind = np.nonzero(addon)
    number = np.concatenate([np.arange(invoice.size), invoice_no])
    row = invoice[number]
    plan = np.concatenate([terms.get("plan")[invoice], len(PLANS) + addon_kind])
    amount = np.concatenate(
        [
            terms.get("amount")[invoice],
            np.round(terms.get("unit_addon")[row[invoice.size :], addon_kind], 2),
        ]
    )
    discount = terms.get("discount")[row]
    list_amount = amount / (1.0 - discount)
    shuffle = rng.permutation(row.size)
    row, number, plan = row[shuffle], number[shuffle], plan[shuffle]
    amount, list_amount = amount[shuffle], list_amount[shuffle]
    columns = {
        "customer_id": strings(customer_ids, terms.get("customer")[row]),
        "ts": stamp(paid_at[row]),
        "amount": amount,
        "order_id": strings(sequential_ids("INV", max(invoice.size, 1), width=8), number),
        "category": strings(pa.array([*PLANS, *ADDONS]), plan),
        "discount": np.round(list_amount - amount, 2),
    }
    return pd.DataFrame(columns)[[c for c in TRANSACTIONS.column_names if c in columns]]


def _events_frame(
    rng: np.random.Generator,
    events: _Events,
    customer_ids: pa.Array,
    stamp: _Stamper,
    days: float,
) -> pd.DataFrame:
    """The events before the end of the period, in a shuffled order."""

    def column(name: str) -> np.ndarray:
        return np.concatenate([events.plain.take(name), events.valued.take(name)])

    plain_size = sum(part.size for part in events.plain.parts["code"])
    t = column("t")
    order = np.flatnonzero(t < days)
    order = order[rng.permutation(order.size)]
    frame = {"ts": stamp(t[order])}
    del t
    frame["customer_id"] = strings(customer_ids, column("customer")[order])
    frame["event"] = strings(pa.array(EVENT_NAMES), column("code")[order].astype(np.int64))
    valued = events.valued.take("value")
    value = np.full(plain_size + valued.size, np.nan)
    value[plain_size:] = valued
    frame["value"] = value[order]
    del order, value
    # copy=False: at a million accounts each copy of a column is a gigabyte.
    return pd.DataFrame(frame, copy=False)[[c for c in EVENTS.column_names if c in frame]]
