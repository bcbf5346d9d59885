"""Synthetic retailer tables with planted churn, value and engagement structure."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import CUSTOMERS, EVENTS, KNOWN_EVENTS, TRANSACTIONS, Tables

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

DAY_SECONDS = 86_400
DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12

# The generator's hidden truth. Archetypes never reach the output tables: models must find
# them from behaviour, as they would with a real retailer.
ARCHETYPES = ("loyal", "vip", "discount_seeker", "one_time", "occasional")
LOYAL, VIP, DISCOUNT_SEEKER, ONE_TIME, OCCASIONAL = range(5)
ARCHETYPE_SHARES = np.array([0.14, 0.06, 0.20, 0.25, 0.35])

SEGMENTS = ("student", "parent", "tech_fan", "professional", "retiree")
REGIONS = ("north", "south", "east", "west", "central")
ACQUISITION_CHANNELS = ("organic", "paid_search", "social", "referral")
PURCHASE_CHANNELS = ("app", "web", "store")
APP, WEB, STORE = range(3)
MESSAGE_CHANNELS = ("email", "sms", "push")
EMAIL, SMS, PUSH = range(3)
CATEGORIES = ("electronics", "books", "fashion", "home", "toys", "grocery")
ELECTRONICS = 0
CUSTOM_EVENT = "wishlist_add"
EVENT_NAMES = (*KNOWN_EVENTS, CUSTOM_EVENT)
EVENT_CODE = {name: code for code, name in enumerate(EVENT_NAMES)}
# Event channels: the purchase channels first so a purchase-channel code is also an event one.
EVENT_CHANNELS = (*PURCHASE_CHANNELS, *MESSAGE_CHANNELS)
NO_CHANNEL = -1

# Rows: archetypes (ARCHETYPES order); columns: the named vocabulary's order.
SEGMENT_BY_ARCHETYPE = np.array(
    [
        [0.10, 0.30, 0.15, 0.25, 0.20],
        [0.05, 0.20, 0.35, 0.35, 0.05],
        [0.40, 0.25, 0.15, 0.10, 0.10],
        [0.25, 0.20, 0.20, 0.20, 0.15],
        [0.20, 0.20, 0.20, 0.20, 0.20],
    ]
)
ACQUISITION_BY_ARCHETYPE = np.array(
    [
        [0.45, 0.15, 0.10, 0.30],
        [0.40, 0.25, 0.10, 0.25],
        [0.15, 0.35, 0.45, 0.05],
        [0.25, 0.35, 0.35, 0.05],
        [0.40, 0.25, 0.25, 0.10],
    ]
)
PURCHASE_CHANNEL_BY_ARCHETYPE = np.array(
    [
        [0.50, 0.25, 0.25],
        [0.45, 0.30, 0.25],
        [0.25, 0.60, 0.15],
        [0.15, 0.60, 0.25],
        [0.30, 0.45, 0.25],
    ]
)
REGION_SHARES = np.array([0.25, 0.20, 0.20, 0.15, 0.20])
MESSAGE_CHANNEL_SHARES = np.array([0.50, 0.20, 0.30])
CATEGORY_BY_SEGMENT = np.array(
    [
        [0.20, 0.30, 0.25, 0.05, 0.05, 0.15],
        [0.05, 0.05, 0.15, 0.20, 0.30, 0.25],
        [0.55, 0.15, 0.10, 0.10, 0.05, 0.05],
        [0.20, 0.10, 0.30, 0.20, 0.05, 0.15],
        [0.05, 0.25, 0.10, 0.30, 0.05, 0.25],
    ]
)
LINES_BY_ARCHETYPE = np.array(
    [
        [0.55, 0.30, 0.10, 0.05],
        [0.35, 0.35, 0.20, 0.10],
        [0.60, 0.25, 0.10, 0.05],
        [0.60, 0.25, 0.10, 0.05],
        [0.60, 0.25, 0.10, 0.05],
    ]
)

# Per-archetype parameters, in ARCHETYPES order.
GAP_MEAN_DAYS = np.array([10.0, 17.0, 26.0, 1.0, 60.0])
# Gamma shape of the inter-purchase gaps: a high shape is a steady rhythm, below 1 is bursty.
GAP_SHAPE = np.array([4.0, 2.0, 1.2, 1.0, 0.8])
LINE_MEAN_AMOUNT = np.array([30.0, 90.0, 22.0, 35.0, 35.0])
ANNUAL_HAZARD = np.array([0.10, 0.18, 0.90, 0.0, 0.45])
DISCOUNT_LINE_PROB = np.array([0.06, 0.04, 0.80, 0.12, 0.08])
CONTENT_USER_PROB = np.array([0.45, 0.40, 0.12, 0.05, 0.30])
SESSIONS_PER_MONTH = np.array([1.4, 1.4, 1.0, 0.6, 0.6])
REFERRALS_PER_YEAR = np.array([0.40, 0.30, 0.03, 0.02, 0.05])
NPS_MEAN = np.array([8.8, 8.6, 6.8, 7.2, 7.6])
PAYMENT_LATE_PER_YEAR = np.array([0.08, 0.05, 0.40, 0.10, 0.12])

# Hazard multipliers: the effects a churn model should recover.
HAZARD_BY_PURCHASE_CHANNEL = np.array([0.55, 1.35, 1.0])
HAZARD_BY_ACQUISITION = np.array([1.0, 1.15, 1.30, 0.75])
HAZARD_BY_SEGMENT = np.array([1.20, 0.90, 1.00, 1.00, 0.80])
HAZARD_CONTENT_USER = 0.4
# After a service failure the hazard becomes multiple x base + extra (per year): an unresolved
# one makes even a loyal regular likely to leave within months.
HAZARD_AFTER_UNRESOLVED_FAILURE = (4.0, 3.5)
HAZARD_AFTER_RESOLVED_FAILURE = (1.3, 0.1)
FAILURES_PER_YEAR = 0.35
FAILURE_RESOLVED_PROB = 0.55
ONE_TIME_LINGER_DAYS = 21.0
# Engagement fades over the weeks before a customer stops buying: the early warning to learn.
DECLINE_DAYS = 60.0
DECLINE_FACTOR = 0.1
AFTER_DEATH_FACTOR = 0.05

MONTH_SEASONALITY = np.array([0.9, 0.85, 1.0, 1.0, 1.0, 0.8, 0.75, 0.8, 1.0, 1.05, 1.5, 1.6])
CATEGORY_PRICE = np.array([2.2, 0.45, 1.0, 1.3, 0.7, 0.5])
CATEGORY_MARGIN = np.array([0.23, 0.30, 0.41, 0.35, 0.33, 0.24])
CATEGORY_REFUND_PROB = np.array([0.025, 0.010, 0.035, 0.015, 0.015, 0.008])
DISCOUNT_FRACTIONS = np.array([0.10, 0.15, 0.20, 0.25, 0.30, 0.40])
UPGRADE_PRICE = 3.0


@dataclass(frozen=True)
class _Population:
    """Per-customer latent parameters; time is in days since the start of the data period."""

    archetype: IntArray
    segment: IntArray
    region: IntArray
    acquisition: IntArray
    purchase_channel: IntArray
    message_channel: IntArray
    favourite_category: IntArray
    content_user: BoolArray
    first_purchase: FloatArray
    signup: FloatArray
    death: FloatArray
    failure: FloatArray
    failure_resolved: BoolArray
    upgrade: FloatArray
    spend_scale: FloatArray
    gap_mean: FloatArray


@dataclass(frozen=True)
class _Period:
    """The data period and its seasonal clock."""

    start_us: int
    days: float
    seconds: int
    grid: FloatArray
    clock: FloatArray
    month: IntArray

    def warp(self, t: FloatArray) -> FloatArray:
        """Seasonal time: one unit is one average day of shopping intensity."""
        return np.interp(t, self.grid, self.clock)

    def unwarp(self, w: FloatArray) -> FloatArray:
        """Calendar days from seasonal time (the clock is strictly increasing)."""
        return np.interp(w, self.clock, self.grid)

    def months(self, t: FloatArray) -> IntArray:
        """Calendar month (0 = January) of each time in the period."""
        return self.month[np.floor(t).astype(np.int64)]


def generate_tables(
    n_customers: int,
    seed: int = 0,
    end: pd.Timestamp | str = "2026-11-01",
    years: float = 3.0,
) -> Tables:
    """Generate a synthetic retailer data set with planted churn and value structure.

    Customers belong to hidden archetypes (loyal regulars, VIPs, discount seekers, one-time and
    occasional buyers), first buy at a time spread over the period with growth, buy at a
    customer-specific seasonal rhythm until a latent churn time, and leave engagement events.
    App users, content viewers and referred customers churn less; an unresolved service failure
    (support ticket, complaint, low NPS) multiplies the churn hazard, and sessions fade in the
    weeks before a customer stops buying. Survey values: `nps` 0-10, `csat` 1-5, `ces` 1-7
    (higher is easier). Refunds are negative-amount rows sharing the order_id of the purchase.

    Args:
        n_customers: Number of customers; each has at least one transaction.
        seed: Seed of `numpy.random.default_rng`; the same seed gives identical tables.
        end: Exclusive end of the data period; every timestamp is strictly before it.
        years: Length of the data period before `end`, in years.

    Returns:
        Transactions (row order shuffled), customers (sorted by id) and events (shuffled), with
        the contract columns: string columns of pandas `str` dtype, naive UTC
        `datetime64[us]` timestamps and float64 numbers.

    Raises:
        ValueError: If `n_customers` < 1 or `years` <= 0.
    """
    if n_customers < 1:
        raise ValueError(f"n_customers must be at least 1, got {n_customers}")
    if years <= 0:
        raise ValueError(f"years must be positive, got {years}")
    rng = np.random.default_rng(seed)
    period = _period(pd.Timestamp(end), years)
    people = _draw_population(rng, n_customers, period)
    customer_ids = _ids("C", n_customers)
    # Each table becomes a frame before the next is drawn, so its arrays are freed early.
    transactions = _draw_transactions(rng, people, period).frame(customer_ids, period)
    events = _draw_events(rng, people, period).frame(customer_ids, period)
    return Tables(
        transactions=transactions,
        customers=_customers_frame(people, customer_ids, period),
        events=events,
    )


def _period(end: pd.Timestamp, years: float) -> _Period:
    """The data period ending at `end` with a daily grid of the seasonal clock."""
    if end.tzinfo is not None:
        end = end.tz_convert("UTC").tz_localize(None)
    seconds = round(years * DAYS_PER_YEAR * DAY_SECONDS)
    start_us = end.value // 1000 - seconds * 1_000_000
    days = seconds / DAY_SECONDS
    grid = np.arange(int(np.ceil(days)) + 2, dtype=np.float64)
    day_us = start_us + grid[:-1].astype(np.int64) * DAY_SECONDS * 1_000_000
    month = day_us.view("datetime64[us]").astype("datetime64[M]").astype(np.int64) % 12
    intensity = MONTH_SEASONALITY[month]
    clock = np.concatenate([[0.0], np.cumsum(intensity / MONTH_SEASONALITY.mean())])
    return _Period(
        start_us=start_us,
        days=days,
        seconds=seconds,
        grid=grid,
        clock=clock,
        month=month,
    )


def _draw_by_group(rng: np.random.Generator, groups: IntArray, table: FloatArray) -> IntArray:
    """One categorical draw per row, with the probabilities of the row's group in `table`."""
    cumulative = np.cumsum(table / table.sum(axis=1, keepdims=True), axis=1)
    # Inverse-CDF lookup on a fine grid (error <= 1/65536 per probability): one gather per
    # row instead of a search, which matters at tens of millions of rows.
    cells = 1 << 16
    centres = (np.arange(cells) + 0.5) / cells
    lookup = np.stack([np.searchsorted(c, centres, side="right") for c in cumulative])
    lookup = np.minimum(lookup, table.shape[1] - 1).ravel()
    return lookup[groups * cells + rng.integers(0, cells, groups.size)]


def _draw_population(rng: np.random.Generator, n: int, period: _Period) -> _Population:
    """Hidden per-customer parameters: archetype, profile, rhythm, churn time and failure."""
    archetype = rng.choice(len(ARCHETYPES), size=n, p=ARCHETYPE_SHARES)
    segment = _draw_by_group(rng, archetype, SEGMENT_BY_ARCHETYPE)
    acquisition = _draw_by_group(rng, archetype, ACQUISITION_BY_ARCHETYPE)
    purchase_channel = _draw_by_group(rng, archetype, PURCHASE_CHANNEL_BY_ARCHETYPE)
    region = rng.choice(len(REGIONS), size=n, p=REGION_SHARES)
    message_channel = rng.choice(len(MESSAGE_CHANNELS), size=n, p=MESSAGE_CHANNEL_SHARES)
    # Push needs the app; without it that customer answers email instead.
    message_channel[(message_channel == PUSH) & (purchase_channel != APP)] = EMAIL
    favourite_category = _draw_by_group(rng, segment, CATEGORY_BY_SEGMENT)
    content_user = rng.random(n) < CONTENT_USER_PROB[archetype]

    # Growing acquisition: first purchases have density proportional to exp(growth * t / T),
    # drawn by inverting its CDF. Ids follow first-purchase order, as in a real system.
    growth = 1.0
    u = np.sort(rng.random(n))
    first_purchase = period.days * np.log1p(u * np.expm1(growth)) / growth
    lag = np.where(rng.random(n) < 0.4, 0.0, rng.exponential(5.0, n))
    signup = first_purchase - lag

    hazard = (
        ANNUAL_HAZARD[archetype]
        * HAZARD_BY_PURCHASE_CHANNEL[purchase_channel]
        * HAZARD_BY_ACQUISITION[acquisition]
        * HAZARD_BY_SEGMENT[segment]
        * np.where(content_user, HAZARD_CONTENT_USER, 1.0)
        * rng.gamma(4.0, 0.25, n)
        / DAYS_PER_YEAR
    )
    # Piecewise-constant hazard: the base rate until a service failure, a higher one after.
    # Inverting the cumulative hazard at an Exp(1) draw gives the lifetime.
    budget = rng.exponential(1.0, n)
    until_failure = rng.exponential(DAYS_PER_YEAR / FAILURES_PER_YEAR, n)
    resolved = rng.random(n) < FAILURE_RESOLVED_PROB
    multiple, extra = np.where(
        resolved[None, :],
        np.array(HAZARD_AFTER_RESOLVED_FAILURE)[:, None],
        np.array(HAZARD_AFTER_UNRESOLVED_FAILURE)[:, None],
    )
    one_time = archetype == ONE_TIME
    safe_hazard = np.where(one_time, 1.0, hazard)
    base_life = np.where(one_time, rng.exponential(ONE_TIME_LINGER_DAYS, n), budget / safe_hazard)
    failed = until_failure < base_life
    after_hazard = safe_hazard * multiple + extra / DAYS_PER_YEAR
    failed_life = until_failure + (budget - safe_hazard * until_failure) / after_hazard
    life = np.where(failed & ~one_time, failed_life, base_life)
    failure = np.where(failed, first_purchase + until_failure, np.nan)

    upgrades = ((archetype == VIP) & (rng.random(n) < 0.6)) | (
        (archetype == LOYAL) & (rng.random(n) < 0.1)
    )
    active_span = np.minimum(first_purchase + life, period.days) - first_purchase
    upgrade = np.where(upgrades, first_purchase + rng.uniform(0.15, 0.85, n) * active_span, np.inf)
    return _Population(
        archetype=archetype,
        segment=segment,
        region=region,
        acquisition=acquisition,
        purchase_channel=purchase_channel,
        message_channel=message_channel,
        favourite_category=favourite_category,
        content_user=content_user,
        first_purchase=first_purchase,
        signup=signup,
        death=first_purchase + life,
        failure=failure,
        failure_resolved=resolved,
        upgrade=upgrade,
        spend_scale=rng.lognormal(0.0, 0.3, n),
        gap_mean=GAP_MEAN_DAYS[archetype] * rng.lognormal(0.0, 0.35, n),
    )


@dataclass(frozen=True)
class _Rows:
    """Column arrays of a table before the ids and labels become strings."""

    customer: IntArray
    t: FloatArray
    columns: dict[str, object]
    names: list[str]

    def frame(self, customer_ids: pa.Array, period: _Period) -> pd.DataFrame:
        """The contract frame: ids and labels as `str`, times as `datetime64[us]`."""
        data: dict[str, object] = {
            "customer_id": _strings(customer_ids, self.customer),
            "ts": _timestamps(period, self.t),
        }
        data.update(self.columns)
        return pd.DataFrame(data)[self.names]


def _draw_orders(
    rng: np.random.Generator, people: _Population, period: _Period
) -> tuple[IntArray, FloatArray]:
    """Order times per customer: a gamma renewal process in seasonal time until churn."""
    n = people.archetype.size
    shape = GAP_SHAPE[people.archetype]
    w_first = period.warp(people.first_purchase)
    w_stop = period.warp(np.minimum(people.death, period.days))
    expected = np.where(people.archetype == ONE_TIME, 0.0, (w_stop - w_first) / people.gap_mean)
    # Draw a few standard deviations more gaps than needed, then cut at the churn time:
    # one vectorised pass instead of a loop per customer.
    budget = np.ceil(expected + 3.5 * np.sqrt(expected / shape) + 2.0).astype(np.int64)
    budget[people.archetype == ONE_TIME] = 0
    owner = np.repeat(np.arange(n), budget)
    gaps = rng.gamma(shape[owner], (people.gap_mean / shape)[owner])
    elapsed = np.cumsum(gaps)
    del gaps
    # Each customer's gaps restart from their first purchase: subtract the running total
    # accumulated by the customers before them.
    block_start = np.cumsum(budget) - budget
    carried = elapsed[np.maximum(block_start - 1, 0)] if elapsed.size else np.zeros(n)
    offset = np.where(block_start > 0, carried, 0.0)
    w = w_first[owner] + (elapsed - np.repeat(offset, budget))
    del elapsed
    keep = w < w_stop[owner]
    customer = np.concatenate([np.arange(n), owner[keep]])
    t = np.concatenate([people.first_purchase, period.unwarp(w[keep])])
    return customer, np.minimum(t, np.nextafter(period.days, 0.0))


def _draw_transactions(rng: np.random.Generator, people: _Population, period: _Period) -> _Rows:
    """Order lines and refunds, in a deterministic shuffled row order."""
    order_customer, order_t = _draw_orders(rng, people, period)
    # Order ids follow time, as an order counter would.
    chronological = np.argsort(order_t)
    order_customer = order_customer[chronological]
    order_t = order_t[chronological]
    n_orders = order_t.size
    arch = people.archetype[order_customer]
    n_lines = _draw_by_group(rng, arch, LINES_BY_ARCHETYPE) + 1
    usual = rng.random(n_orders) < 0.8
    other = (people.purchase_channel[order_customer] + rng.integers(1, 3, n_orders)) % 3
    order_channel = np.where(usual, people.purchase_channel[order_customer], other)
    upgraded = order_t > people.upgrade[order_customer]
    month = period.months(order_t)
    del arch

    order = np.repeat(np.arange(n_orders), n_lines)
    customer = order_customer[order]
    arch = people.archetype[customer]
    n_rows = order.size
    category = _draw_by_group(rng, people.segment[customer], CATEGORY_BY_SEGMENT)
    category = np.where(rng.random(n_rows) < 0.45, people.favourite_category[customer], category)
    line_upgraded = upgraded[order]
    category = np.where(line_upgraded & (rng.random(n_rows) < 0.5), ELECTRONICS, category)

    mean = LINE_MEAN_AMOUNT[arch] * CATEGORY_PRICE[category] * people.spend_scale[customer]
    mean = mean * np.where(line_upgraded, UPGRADE_PRICE, 1.0)
    list_price = np.maximum(rng.lognormal(np.log(mean) - 0.5 * 0.55**2, 0.55), 0.5)

    discount_prob = DISCOUNT_LINE_PROB[arch] + np.where(month[order] == 10, 0.10, 0.0)
    discounted = rng.random(n_rows) < discount_prob
    fraction = np.where(discounted, rng.choice(DISCOUNT_FRACTIONS, n_rows), 0.0)
    amount = np.round(list_price * (1.0 - fraction), 2)
    discount = np.round(list_price * fraction, 2)
    # Deal lines earn the thin end of the category's margin; rates stay within 20-45%.
    rate = CATEGORY_MARGIN[category] + rng.uniform(-0.03, 0.04, n_rows) - 0.5 * fraction
    rate = np.clip(rate, 0.20, 0.45)
    margin = np.round(amount * rate, 2)
    del list_price, rate, mean

    # Refunds: a share of lines come back a few days after the purchase, same order id.
    refunded = np.flatnonzero(rng.random(n_rows) < CATEGORY_REFUND_PROB[category])
    refund_t = order_t[order[refunded]] + 1.0 + rng.exponential(8.0, refunded.size)
    refunded = refunded[refund_t < period.days]
    refund_t = refund_t[refund_t < period.days]
    share = np.where(rng.random(refunded.size) < 0.8, 1.0, rng.uniform(0.3, 0.9, refunded.size))

    rows = np.concatenate([np.arange(n_rows), refunded])
    sign = np.concatenate([np.ones(n_rows), -share])
    t = np.concatenate([order_t[order], refund_t])
    # Downstream code must not rely on row order, so the rows come shuffled.
    shuffle = rng.permutation(rows.size)
    rows, sign, t = rows[shuffle], sign[shuffle], t[shuffle]
    line_order = order[rows]
    columns: dict[str, object] = {
        "amount": np.round(amount[rows] * sign, 2),
        "order_id": _strings(_ids("O", n_orders, width=8), line_order),
        "margin": np.round(margin[rows] * sign, 2),
        "category": _strings(pa.array(CATEGORIES), category[rows]),
        "discount": np.where(sign > 0, discount[rows], 0.0),
        "channel": _strings(pa.array(PURCHASE_CHANNELS), order_channel[line_order]),
    }
    return _Rows(customer[rows], t, columns, TRANSACTIONS.column_names)


@dataclass
class _EventBuffer:
    """Event columns gathered part by part, then concatenated once."""

    customer: list[IntArray]
    t: list[FloatArray]
    code: list[IntArray]
    value: list[FloatArray]
    channel: list[IntArray]

    def add(
        self,
        name: str,
        customer: IntArray,
        t: FloatArray,
        value: FloatArray | None = None,
        channel: IntArray | int = NO_CHANNEL,
    ) -> None:
        """Append events of one name."""
        size = customer.size
        self.customer.append(customer)
        self.t.append(t)
        self.code.append(np.full(size, EVENT_CODE[name], dtype=np.int64))
        self.value.append(np.full(size, np.nan) if value is None else value.astype(np.float64))
        self.channel.append(np.broadcast_to(np.asarray(channel, dtype=np.int64), size))


def _poisson_times(
    rng: np.random.Generator, rate: FloatArray, lo: FloatArray, hi: FloatArray
) -> tuple[IntArray, FloatArray]:
    """Events of a homogeneous Poisson process per customer on [lo, hi) (rate per day)."""
    span = np.maximum(hi - lo, 0.0)
    counts = rng.poisson(rate * span)
    customer = np.repeat(np.arange(rate.size), counts)
    t = lo[customer] + rng.random(customer.size) * span[customer]
    return customer, t


def _visible_signup(people: _Population) -> FloatArray:
    """Signup times clipped to the start of the period, which no event row precedes."""
    return np.maximum(people.signup, 0.0)


def _phased_times(
    rng: np.random.Generator,
    rate: FloatArray,
    people: _Population,
    period: _Period,
    decline: float,
    after: float,
) -> tuple[IntArray, FloatArray]:
    """Events at `rate` while active, `decline` x rate in the last weeks, `after` x once gone."""
    end = np.full(rate.size, period.days)
    begin = _visible_signup(people)
    alive_end = np.minimum(people.death, end)
    fade = np.clip(people.death - DECLINE_DAYS, begin, alive_end)
    parts = [
        _poisson_times(rng, rate, begin, fade),
        _poisson_times(rng, rate * decline, fade, alive_end),
        _poisson_times(rng, rate * after, alive_end, end),
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _draw_events(rng: np.random.Generator, people: _Population, period: _Period) -> _Rows:
    """Engagement, messaging, support and survey events, in a shuffled row order."""
    n = people.archetype.size
    arch = people.archetype
    days = period.days
    buf = _EventBuffer([], [], [], [], [])
    alive_end = np.minimum(people.death, days)
    app_user = people.purchase_channel == APP

    def web_or_app(customer: IntArray) -> IntArray:
        home = np.where(app_user[customer], APP, WEB)
        return np.where(rng.random(customer.size) < 0.85, home, APP + WEB - home)

    activity = SESSIONS_PER_MONTH[arch] * rng.lognormal(0.0, 0.4, n) / DAYS_PER_MONTH
    activity = activity * np.where(app_user, 1.5, 1.0) * np.where(people.content_user, 1.2, 1.0)
    for name, scale in (("session", 1.0), ("product_view", 0.25), (CUSTOM_EVENT, 0.08)):
        c, t = _phased_times(
            rng, activity * scale, people, period, DECLINE_FACTOR, AFTER_DEATH_FACTOR
        )
        value = rng.lognormal(np.log(6.0), 0.7, c.size) if name == "session" else None
        buf.add(name, c, t, value, web_or_app(c))
    content_rate = np.where(people.content_user, 0.5 / DAYS_PER_MONTH, 0.0)
    c, t = _phased_times(rng, content_rate, people, period, DECLINE_FACTOR, AFTER_DEATH_FACTOR)
    buf.add("content_view", c, t, None, web_or_app(c))

    # Each customer answers one messaging channel; the others barely.
    for channel, name in ((EMAIL, "email_open"), (SMS, "sms_click"), (PUSH, "push_open")):
        preferred = people.message_channel == channel
        rate = np.where(preferred, 0.35, 0.03) / DAYS_PER_MONTH
        if channel == PUSH:
            rate = np.where(app_user, rate, 0.0)
        c, t = _phased_times(rng, rate, people, period, 0.5, 0.15)
        buf.add(name, c, t, None, len(PURCHASE_CHANNELS) + channel)
        if channel == EMAIL:
            click = rng.random(c.size) < np.where(preferred[c], 0.3, 0.05)
            click_t = t[click] + rng.uniform(0.0, 0.02, int(click.sum()))
            buf.add("email_click", c[click], click_t, None, len(PURCHASE_CHANNELS) + EMAIL)

    _add_support(rng, buf, people, days, alive_end)

    c, t = _poisson_times(
        rng, REFERRALS_PER_YEAR[arch] / DAYS_PER_YEAR, people.first_purchase, alive_end
    )
    buf.add("referral", c, t)
    late_rate = PAYMENT_LATE_PER_YEAR[arch] / DAYS_PER_YEAR
    c, t = _phased_times(rng, late_rate, people, period, 4.0, 0.0)
    buf.add("payment_late", c, t, np.round(rng.lognormal(np.log(40.0), 0.5, c.size), 2))

    customer = np.concatenate(buf.customer)
    t = np.concatenate(buf.t)
    keep = t < days
    shuffle = rng.permutation(np.flatnonzero(keep))
    channel_codes = np.concatenate(buf.channel)[shuffle]
    columns: dict[str, object] = {
        "event": _strings(pa.array(EVENT_NAMES), np.concatenate(buf.code)[shuffle]),
        "value": np.concatenate(buf.value)[shuffle],
        "channel": _strings(pa.array(EVENT_CHANNELS), channel_codes),
    }
    return _Rows(customer[shuffle], t[shuffle], columns, EVENTS.column_names)


def _add_support(
    rng: np.random.Generator,
    buf: _EventBuffer,
    people: _Population,
    days: float,
    alive_end: FloatArray,
) -> None:
    """Tickets, resolutions, complaints and surveys; unresolved failures precede churn."""
    n = people.archetype.size
    routine_c, routine_t = _poisson_times(
        rng, np.full(n, 0.3 / DAYS_PER_YEAR), people.first_purchase, alive_end
    )
    failed = np.flatnonzero(people.failure < days)
    ticket_c = np.concatenate([routine_c, failed])
    ticket_t = np.concatenate([routine_t, people.failure[failed]])
    serious = np.concatenate([np.zeros(routine_c.size, bool), np.ones(failed.size, bool)])
    resolved = np.concatenate([rng.random(routine_c.size) < 0.93, people.failure_resolved[failed]])
    resolve_days = rng.exponential(np.where(serious, 4.0, 1.5))
    resolved_t = ticket_t + resolve_days
    buf.add("support_ticket", ticket_c, ticket_t)
    done = resolved & (resolved_t < days)
    buf.add("ticket_resolved", ticket_c[done], resolved_t[done])

    # Complaints mostly follow a failure nobody fixed.
    complain = serious & (rng.random(ticket_c.size) < np.where(resolved, 0.1, 0.65))
    complaint_t = ticket_t[complain] + rng.exponential(6.0, int(complain.sum()))
    buf.add("complaint", ticket_c[complain], complaint_t)
    # Some customers who are about to leave say so first, without a ticket.
    leaving = np.flatnonzero(
        (people.death < days) & (people.archetype != ONE_TIME) & (rng.random(n) < 0.15)
    )
    warned_t = people.death[leaving] - rng.uniform(0.0, DECLINE_DAYS, leaving.size)
    warned = warned_t > people.first_purchase[leaving]
    buf.add("complaint", leaving[warned], warned_t[warned])

    survey_t = np.where(resolved, resolved_t, ticket_t + 7.0) + rng.exponential(1.0, ticket_c.size)
    slow = resolve_days > 3.0
    csat_mean = np.where(resolved, np.where(slow, 3.2, 4.4), 1.8)
    asked = rng.random(ticket_c.size) < np.where(resolved, 0.6, 0.3)
    csat = np.clip(np.rint(rng.normal(csat_mean, 0.7)), 1, 5)
    buf.add("csat", ticket_c[asked], survey_t[asked], csat[asked])
    ces_mean = np.where(resolved, np.where(slow, 4.5, 6.0), 2.5)
    asked = rng.random(ticket_c.size) < 0.4
    ces = np.clip(np.rint(rng.normal(ces_mean, 1.0)), 1, 7)
    buf.add("ces", ticket_c[asked], survey_t[asked], ces[asked])

    # NPS: periodic surveys plus one soon after a serious failure. Scores drop after an
    # unresolved failure and in the two months before a customer stops buying.
    periodic_c, periodic_t = _poisson_times(
        rng, np.full(n, 0.6 / DAYS_PER_YEAR), _visible_signup(people), alive_end
    )
    asked = rng.random(failed.size) < 0.5
    leaving = np.flatnonzero(
        (people.death < days)
        & (people.archetype != ONE_TIME)
        & (rng.random(n) < 0.2)
        & (people.death - people.signup > 60.0)
    )
    nps_c = np.concatenate([periodic_c, failed[asked], leaving])
    nps_t = np.concatenate(
        [
            periodic_t,
            people.failure[failed[asked]] + rng.exponential(5.0, int(asked.sum())),
            people.death[leaving] - rng.uniform(0.0, 60.0, leaving.size),
        ]
    )
    after_failure = nps_t > people.failure[nps_c]
    unresolved = ~people.failure_resolved[nps_c]
    mean = (
        NPS_MEAN[people.archetype[nps_c]]
        + np.where(people.content_user[nps_c], 0.5, 0.0)
        - np.where(after_failure, np.where(unresolved, 3.5, 1.0), 0.0)
        - np.where(nps_t > people.death[nps_c] - 60.0, 3.0, 0.0)
    )
    nps = np.clip(np.rint(rng.normal(mean, 1.4)), 0, 10)
    buf.add("nps", nps_c, nps_t, nps)


def _customers_frame(people: _Population, customer_ids: pa.Array, period: _Period) -> pd.DataFrame:
    """The customers table, one row per customer sorted by id."""
    return pd.DataFrame(
        {
            "customer_id": _strings(customer_ids, np.arange(people.archetype.size)),
            "signup_ts": _timestamps(period, people.signup),
            "segment": _strings(pa.array(SEGMENTS), people.segment),
            "acquisition_channel": _strings(pa.array(ACQUISITION_CHANNELS), people.acquisition),
            "region": _strings(pa.array(REGIONS), people.region),
        }
    )[CUSTOMERS.column_names]


def _ids(prefix: str, n: int, width: int = 7) -> pa.Array:
    """Zero-padded ids `prefix` + 1..n, padded to at least `width` digits."""
    digits = max(width, len(str(n)))
    numbers = pc.cast(pa.array(np.arange(1, n + 1, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, digits, "0"), "")


def _strings(vocabulary: pa.Array, codes: IntArray) -> pd.arrays.ArrowStringArray:
    """A pandas `str` array of `vocabulary[codes]`; negative codes become missing."""
    indices = pa.array(codes, mask=codes < 0) if codes.size else pa.array([], pa.int64())
    taken = vocabulary.take(indices)
    return pd.array(taken, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


def _timestamps(period: _Period, t: FloatArray) -> pd.DatetimeIndex:
    """Naive UTC `datetime64[us]` stamps, floored to the second, from days since the start."""
    seconds = np.minimum(np.floor(np.asarray(t) * DAY_SECONDS), period.seconds - 1)
    micros = period.start_us + seconds.astype(np.int64) * 1_000_000
    return pd.DatetimeIndex(micros.view("datetime64[us]"))
