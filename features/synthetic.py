"""Synthetic retailer tables with planted churn, value and engagement structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import CUSTOMERS, TRANSACTIONS, Tables
from features.synthetic_events import draw_events
from features.synthetic_world import (
    ACQUISITION_BY_ARCHETYPE,
    ACQUISITION_CHANNELS,
    ANNUAL_HAZARD,
    APP,
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
    LINE_MEAN_AMOUNT,
    LINES_BY_ARCHETYPE,
    LOYAL,
    MESSAGE_CHANNEL_SHARES,
    MESSAGE_CHANNELS,
    MONTH_SEASONALITY,
    ONE_TIME,
    ONE_TIME_LINGER_DAYS,
    PURCHASE_CHANNEL_BY_ARCHETYPE,
    PURCHASE_CHANNELS,
    PUSH,
    REGION_SHARES,
    REGIONS,
    SEGMENT_BY_ARCHETYPE,
    SEGMENTS,
    UPGRADE_PRICE,
    VIP,
    FloatArray,
    IntArray,
    Period,
    Population,
    Rows,
    strings,
    timestamps,
)


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
    events = draw_events(rng, people, period).frame(customer_ids, period)
    return Tables(
        transactions=transactions,
        customers=_customers_frame(people, customer_ids, period),
        events=events,
    )


def _period(end: pd.Timestamp, years: float) -> Period:
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
    return Period(
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


def _draw_population(rng: np.random.Generator, n: int, period: Period) -> Population:
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
        failure=failure,
        failure_resolved=resolved,
        upgrade=upgrade,
        spend_scale=rng.lognormal(0.0, 0.3, n),
        gap_mean=GAP_MEAN_DAYS[archetype] * rng.lognormal(0.0, 0.35, n),
    )


def _draw_orders(
    rng: np.random.Generator, people: Population, period: Period
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


def _draw_transactions(rng: np.random.Generator, people: Population, period: Period) -> Rows:
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
        "order_id": strings(_ids("O", n_orders, width=8), line_order),
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


def _ids(prefix: str, n: int, width: int = 7) -> pa.Array:
    """Zero-padded ids `prefix` + 1..n, padded to at least `width` digits."""
    digits = max(width, len(str(n)))
    numbers = pc.cast(pa.array(np.arange(1, n + 1, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, digits, "0"), "")
