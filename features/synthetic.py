"""Synthetic retailer tables with planted churn, value and engagement structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import CUSTOMERS, TRANSACTIONS, Tables
from features.synthetic_events import draw_events
from features.synthetic_orders import draw_baskets, draw_orders
from features.synthetic_world import (
    ACQUISITION_BY_ARCHETYPE,
    ACQUISITION_CHANNELS,
    ANNUAL_HAZARD,
    APP,
    ARCHETYPE_DRIFT,
    ARCHETYPE_SHARES,
    ARCHETYPES,
    CATEGORIES,
    CATEGORY_BY_SEGMENT,
    CATEGORY_MARGIN,
    CATEGORY_PRICE,
    CATEGORY_REFUND_PROB,
    CONTENT_USER_PROB,
    DAY_SECONDS,
    DAYS_PER_YEAR,
    DISCOUNT_FRACTIONS,
    DISCOUNT_LINE_PROB,
    ELECTRONICS,
    EMAIL,
    FAILURE_RESOLVED_PROB,
    FAILURES_PER_YEAR,
    GAP_MEAN_DAYS,
    GAP_SHAPE,
    HAZARD_AFTER_RESOLVED_FAILURE,
    HAZARD_AFTER_UNRESOLVED_FAILURE,
    HAZARD_BY_ACQUISITION,
    HAZARD_BY_PURCHASE_CHANNEL,
    HAZARD_BY_SEGMENT,
    HAZARD_CONTENT_USER,
    HOLIDAY_ONE_TIME_SHIFT,
    IRREGULAR_GAP_SHAPE,
    IRREGULAR_SHARE,
    LINE_MEAN_AMOUNT,
    LINES_BY_ARCHETYPE,
    LOYAL,
    MESSAGE_CHANNEL_SHARES,
    MESSAGE_CHANNELS,
    MONTH_BASKET,
    MONTH_SEASONALITY,
    OCCASIONAL,
    ONE_TIME,
    ONE_TIME_LINGER_DAYS,
    PURCHASE_CHANNEL_BY_ARCHETYPE,
    PURCHASE_CHANNELS,
    PUSH,
    REGION_SHARES,
    REGIONS,
    SEGMENT_BY_ARCHETYPE,
    SEGMENTS,
    SPEND_DRIFT_PER_YEAR,
    SPEND_SCALE_SIGMA,
    UPGRADE_PRICE,
    VIP,
    BoolArray,
    FloatArray,
    IntArray,
    Period,
    Population,
    Realism,
    Rows,
    strings,
    timestamps,
)


def generate_tables(
    n_customers: int,
    seed: int = 0,
    end: pd.Timestamp | str = "2026-11-01",
    years: float = 3.0,
    *,
    noise: float = Realism.noise,
    acausal_churn: float = Realism.acausal_churn,
    cohort_decay: float = Realism.cohort_decay,
    seasonality: float = Realism.seasonality,
) -> Tables:
    """Generate a synthetic retailer data set with planted churn and value structure.

    Customers belong to hidden archetypes (loyal regulars, VIPs, discount seekers, one-time and
    occasional buyers), first buy at a time spread over the period with growth and a holiday
    peak, buy at a customer-specific seasonal rhythm until a latent churn time, and leave
    engagement events. App users, content viewers and referred customers churn less; an
    unresolved service failure (support ticket, complaint, low NPS) multiplies the churn hazard,
    and sessions fade in the weeks before a customer stops buying. Survey values: `nps` 0-10,
    `csat` 1-5, `ces` 1-7 (higher is easier). Refunds are negative-amount rows sharing the
    order_id of the purchase.

    The world is not easy on models (each strength at 0 switches its part off): purchase
    timing and amounts carry heavy-tailed noise and some customers buy irregularly, with long
    silences they come back from; a share of churn strikes at random, unannounced; purchase
    rates decay with customer age while the acquired mix drifts towards deal hunters and
    one-off buyers; and a yearly cycle (December peak, summer low) moves order counts and
    basket sizes, so the level of a window depends on the months it holds.

    Args:
        n_customers: Number of customers; each has at least one transaction.
        seed: Seed of `numpy.random.default_rng`; the same seed gives identical tables.
        end: Exclusive end of the data period; every timestamp is strictly before it.
        years: Length of the data period before `end`, in years.
        noise: Strength of the timing and amount noise and of the share of irregular buyers.
        acausal_churn: Share of the repeat customers' churn that no trait or event foreshadows,
            in [0, 1).
        cohort_decay: Strength of the decay of purchase rates with age and of the drift of the
            acquired mix.
        seasonality: Strength of the yearly cycle of orders, basket sizes and acquisition.

    Returns:
        Transactions (row order shuffled), customers (sorted by id) and events (shuffled), with
        the contract columns: string columns of pandas `str` dtype, naive UTC
        `datetime64[us]` timestamps and float64 numbers.

    Raises:
        ValueError: If `n_customers` < 1, `years` <= 0 or a strength is out of range.
    """
    if n_customers < 1:
        raise ValueError(f"n_customers must be at least 1, got {n_customers}")
    if years <= 0:
        raise ValueError(f"years must be positive, got {years}")
    realism = Realism(
        noise=noise,
        acausal_churn=acausal_churn,
        cohort_decay=cohort_decay,
        seasonality=seasonality,
    )
    rng = np.random.default_rng(seed)
    period = _period(pd.Timestamp(end), years, realism.seasonality)
    people = _draw_population(rng, n_customers, period, realism)
    customer_ids = sequential_ids("C", n_customers)
    # Each table becomes a frame before the next is drawn, so its arrays are freed early.
    transactions = _draw_transactions(rng, people, period, realism).frame(customer_ids, period)
    events = draw_events(rng, people, period, realism).frame(customer_ids, period)
    return Tables(
        transactions=transactions,
        customers=_customers_frame(people, customer_ids, period),
        events=events,
    )


def _period(end: pd.Timestamp, years: float, seasonality: float) -> Period:
    """The data period ending at `end` with a daily grid of the seasonal clock."""
    if end.tzinfo is not None:
        end = end.tz_convert("UTC").tz_localize(None)
    seconds = round(years * DAYS_PER_YEAR * DAY_SECONDS)
    start_us = end.value // 1000 - seconds * 1_000_000
    days = seconds / DAY_SECONDS
    grid = np.arange(int(np.ceil(days)) + 2, dtype=np.float64)
    day_us = start_us + grid[:-1].astype(np.int64) * DAY_SECONDS * 1_000_000
    month = day_us.view("datetime64[us]").astype("datetime64[M]").astype(np.int64) % 12
    orders = MONTH_SEASONALITY**seasonality
    intensity = orders[month] / orders.mean()
    basket = MONTH_BASKET**seasonality
    return Period(
        start_us=start_us,
        days=days,
        seconds=seconds,
        grid=grid,
        clock=np.concatenate([[0.0], np.cumsum(intensity)]),
        month=month,
        intensity=intensity,
        basket=basket / basket.mean(),
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


def _draw_first_purchases(rng: np.random.Generator, n: int, period: Period) -> FloatArray:
    """Sorted first-purchase times: growing acquisition that peaks with the season.

    The density is proportional to exp(growth * t / T) times the day's order intensity, drawn
    by inverting its cumulative sum on the daily grid. Ids follow first-purchase order, as in a
    real system.
    """
    growth = 1.0
    edges = np.minimum(period.grid, period.days)
    width = np.diff(edges)
    middle = edges[:-1] + 0.5 * width
    weight = np.exp(growth * middle / period.days) * period.intensity * width
    cumulative = np.concatenate([[0.0], np.cumsum(weight)])
    u = np.sort(rng.random(n))
    return np.minimum(
        np.interp(u * cumulative[-1], cumulative, edges), np.nextafter(period.days, 0)
    )


def _draw_archetypes(
    rng: np.random.Generator, first_purchase: FloatArray, period: Period, realism: Realism
) -> IntArray:
    """Archetypes from a mix that drifts over the period and leans to one-off buyers at holidays."""
    bins = 16
    position = (np.arange(bins) + 0.5) / bins - 0.5
    shares = ARCHETYPE_SHARES + realism.cohort_decay * position[:, None] * ARCHETYPE_DRIFT
    shift = np.zeros(len(ARCHETYPES))
    shift[ONE_TIME], shift[OCCASIONAL] = HOLIDAY_ONE_TIME_SHIFT, -HOLIDAY_ONE_TIME_SHIFT
    holiday_shares = shares + min(realism.seasonality, 1.0) * shift
    # Rows: (time bin, holiday) pairs, holiday second.
    table = np.maximum(np.stack([shares, holiday_shares], axis=1).reshape(2 * bins, -1), 0.005)
    time_bin = np.minimum((first_purchase / period.days * bins).astype(np.int64), bins - 1)
    holiday = (period.months(first_purchase) >= 10).astype(np.int64)
    return _draw_by_group(rng, time_bin * 2 + holiday, table)


def _draw_population(
    rng: np.random.Generator, n: int, period: Period, realism: Realism
) -> Population:
    """Hidden per-customer parameters: archetype, profile, rhythm, churn time and failure."""
    first_purchase = _draw_first_purchases(rng, n, period)
    archetype = _draw_archetypes(rng, first_purchase, period, realism)
    segment = _draw_by_group(rng, archetype, SEGMENT_BY_ARCHETYPE)
    acquisition = _draw_by_group(rng, archetype, ACQUISITION_BY_ARCHETYPE)
    purchase_channel = _draw_by_group(rng, archetype, PURCHASE_CHANNEL_BY_ARCHETYPE)
    region = rng.choice(len(REGIONS), size=n, p=REGION_SHARES)
    message_channel = rng.choice(len(MESSAGE_CHANNELS), size=n, p=MESSAGE_CHANNEL_SHARES)
    # Push needs the app; without it that customer answers email instead.
    message_channel[(message_channel == PUSH) & (purchase_channel != APP)] = EMAIL
    favourite_category = _draw_by_group(rng, segment, CATEGORY_BY_SEGMENT)
    content_user = rng.random(n) < CONTENT_USER_PROB[archetype]
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
    behavioural_life = np.where(failed & ~one_time, failed_life, base_life)
    acausal_life = _acausal_lives(rng, first_purchase, behavioural_life, ~one_time, period, realism)
    acausal = acausal_life < behavioural_life
    life = np.where(acausal, acausal_life, behavioural_life)
    # A failure after an acausal exit never happens.
    failure = np.where(failed & (until_failure < life), first_purchase + until_failure, np.nan)

    upgrades = ((archetype == VIP) & (rng.random(n) < 0.6)) | (
        (archetype == LOYAL) & (rng.random(n) < 0.1)
    )
    active_span = np.minimum(first_purchase + life, period.days) - first_purchase
    upgrade = np.where(upgrades, first_purchase + rng.uniform(0.15, 0.85, n) * active_span, np.inf)
    irregular = ~one_time & (rng.random(n) < min(IRREGULAR_SHARE * realism.noise, 1.0))
    gap_shape = GAP_SHAPE[archetype]
    return Population(
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
        announced_death=np.where(acausal, np.inf, first_purchase + life),
        acausal=acausal,
        failure=failure,
        failure_resolved=resolved,
        upgrade=upgrade,
        spend_scale=rng.lognormal(
            0.0, SPEND_SCALE_SIGMA[0] + SPEND_SCALE_SIGMA[1] * realism.noise, n
        ),
        spend_drift=rng.normal(0.0, SPEND_DRIFT_PER_YEAR * realism.noise, n),
        gap_mean=GAP_MEAN_DAYS[archetype] * rng.lognormal(0.0, 0.35, n),
        gap_shape=np.where(irregular, np.minimum(gap_shape, IRREGULAR_GAP_SHAPE), gap_shape),
        irregular=irregular,
    )


def _acausal_lives(
    rng: np.random.Generator,
    first_purchase: FloatArray,
    behavioural_life: FloatArray,
    repeat: BoolArray,
    period: Period,
    realism: Realism,
) -> FloatArray:
    """Lifetimes under one hazard shared by every repeat customer (+inf for one-time buyers).

    The hazard is set so that acausal exits make about `realism.acausal_churn` of the churn in
    the period: share / (1 - share) times the behavioural churn rate (exits per customer-day
    observed before the period's end), a constant of the world that no trait changes.
    """
    end = np.minimum(first_purchase + behavioural_life, period.days)
    exposure = float(np.sum((end - first_purchase)[repeat]))
    exits = int(np.sum(repeat & (first_purchase + behavioural_life < period.days)))
    share = realism.acausal_churn
    draws = rng.exponential(1.0, first_purchase.size)
    if share == 0 or exits == 0 or exposure <= 0:
        return np.full(first_purchase.size, np.inf)
    rate = share / (1.0 - share) * exits / exposure
    return np.where(repeat, draws / rate, np.inf)


def _draw_transactions(
    rng: np.random.Generator, people: Population, period: Period, realism: Realism
) -> Rows:
    """Order lines and refunds, in a deterministic shuffled row order."""
    order_customer, order_t = draw_orders(rng, people, period, realism)
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
    basket = draw_baskets(rng, people, period, realism, order_customer, order_t)
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
    mean = mean * np.where(line_upgraded, UPGRADE_PRICE, 1.0) * basket[order]
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
        "order_id": strings(sequential_ids("O", n_orders, width=8), line_order),
        "margin": np.round(margin[rows] * sign, 2),
        "category": strings(pa.array(CATEGORIES), category[rows]),
        "discount": np.where(sign > 0, discount[rows], 0.0),
        "channel": strings(pa.array(PURCHASE_CHANNELS), order_channel[line_order]),
    }
    return Rows(customer[rows], t, columns, TRANSACTIONS.column_names)


def _customers_frame(people: Population, customer_ids: pa.Array, period: Period) -> pd.DataFrame:
    """The customers table, one row per customer sorted by id."""
    return pd.DataFrame(
        {
            "customer_id": strings(customer_ids, np.arange(people.archetype.size)),
            "signup_ts": timestamps(period, people.signup),
            "segment": strings(pa.array(SEGMENTS), people.segment),
            "acquisition_channel": strings(pa.array(ACQUISITION_CHANNELS), people.acquisition),
            "region": strings(pa.array(REGIONS), people.region),
        }
    )[CUSTOMERS.column_names]


def sequential_ids(prefix: str, n: int, width: int = 7) -> pa.Array:
    """Zero-padded ids `prefix` + 1..n, padded to at least `width` digits."""
    digits = max(width, len(str(n)))
    numbers = pc.cast(pa.array(np.arange(1, n + 1, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, digits, "0"), "")
