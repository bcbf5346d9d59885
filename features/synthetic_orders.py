"""Synthetic order times and price factors: noisy purchases that slow with age and season."""

from __future__ import annotations

import numpy as np

from features.synthetic_world import (
    AGE_DECAY_DAYS,
    BASKET_NOISE_SIGMA,
    BIG_BASKET_CAP,
    BIG_BASKET_PROB,
    BIG_BASKET_SCALE,
    DAYS_PER_YEAR,
    GAP_NOISE_SIGMA,
    ONE_TIME,
    PAUSE_DAYS,
    PAUSE_PROB,
    PAUSE_TAIL,
    STRAY_ORDERS_PER_YEAR,
    STRAY_SHAPE,
    FloatArray,
    IntArray,
    Period,
    Population,
    Realism,
)


def _age_effort(age: FloatArray, decay_days: float) -> FloatArray:
    """Purchase effort spent by a seasonal age: the integral of 1 / sqrt(1 + a / decay_days)."""
    if not np.isfinite(decay_days):
        return age
    return 2.0 * decay_days * (np.sqrt(1.0 + age / decay_days) - 1.0)


def _age_at_effort(effort: FloatArray, decay_days: float) -> FloatArray:
    """The inverse of `_age_effort`."""
    if not np.isfinite(decay_days):
        return effort
    return effort + effort**2 / (4.0 * decay_days)


def draw_orders(
    rng: np.random.Generator, people: Population, period: Period, realism: Realism
) -> tuple[IntArray, FloatArray]:
    """Order times per customer: a noisy gamma renewal process in seasonal time until churn.

    Gaps are drawn in "effort": seasonal days at a new customer's rate. The rate decays with
    age, so effort maps to seasonal age through `_age_at_effort`; a gap carries lognormal noise
    and sometimes a heavy-tailed pause.
    """
    n = people.archetype.size
    repeat = people.archetype != ONE_TIME
    shape = people.gap_shape
    decay_days = AGE_DECAY_DAYS / realism.cohort_decay if realism.cohort_decay > 0 else np.inf
    w_first = period.warp(people.first_purchase)
    w_stop = period.warp(np.minimum(people.death, period.days))
    effort_stop = _age_effort(w_stop - w_first, decay_days)
    sigma = realism.noise * np.where(people.irregular, GAP_NOISE_SIGMA[1], GAP_NOISE_SIGMA[0])
    pause = np.minimum(
        realism.noise * np.where(people.irregular, PAUSE_PROB[1], PAUSE_PROB[0]), 1.0
    )
    expected = np.where(repeat, effort_stop / people.gap_mean, 0.0)
    # Draw a few standard deviations more gaps than needed, then cut at the churn time:
    # one vectorised pass instead of a loop per customer. The budget allows for the noise's
    # spread; the noise keeps the mean gap and pauses only lengthen it.
    squared_cv = (1.0 + 1.0 / shape) * np.exp(sigma**2) - 1.0
    budget = np.ceil(expected + 3.5 * np.sqrt(expected * squared_cv) + 2.0).astype(np.int64)
    budget[~repeat] = 0
    owner = np.repeat(np.arange(n), budget)
    gaps = rng.gamma(shape[owner], (people.gap_mean / shape)[owner])
    gap_sigma = sigma[owner]
    gaps *= np.exp(gap_sigma * (rng.standard_normal(owner.size) - 0.5 * gap_sigma))
    del gap_sigma
    paused = np.flatnonzero(rng.random(owner.size) < pause[owner])
    gaps[paused] += PAUSE_DAYS * rng.pareto(PAUSE_TAIL, paused.size)
    elapsed = np.cumsum(gaps)
    del gaps, paused
    # Each customer's gaps restart from their first purchase: subtract the running total
    # accumulated by the customers before them.
    block_start = np.cumsum(budget) - budget
    carried = elapsed[np.maximum(block_start - 1, 0)] if elapsed.size else np.zeros(n)
    offset = np.where(block_start > 0, carried, 0.0)
    effort = elapsed - np.repeat(offset, budget)
    del elapsed
    keep = effort < effort_stop[owner]
    kept_owner = owner[keep]
    w = w_first[kept_owner] + _age_at_effort(effort[keep], decay_days)
    # Stray orders after the exit: a Poisson process in seasonal time until the period's end.
    stray_rate = (
        STRAY_ORDERS_PER_YEAR
        * realism.noise
        * rng.gamma(STRAY_SHAPE, 1.0 / STRAY_SHAPE, n)
        / DAYS_PER_YEAR
    )
    w_end = period.warp(np.array([period.days]))
    stray = np.repeat(np.arange(n), rng.poisson(stray_rate * (w_end - w_stop)))
    w_stray = w_stop[stray] + rng.random(stray.size) * (w_end - w_stop)[stray]
    customer = np.concatenate([np.arange(n), kept_owner, stray])
    t = np.concatenate([people.first_purchase, period.unwarp(w), period.unwarp(w_stray)])
    return customer, np.minimum(t, np.nextafter(period.days, 0.0))


def draw_baskets(
    rng: np.random.Generator,
    people: Population,
    period: Period,
    realism: Realism,
    order_customer: IntArray,
    order_t: FloatArray,
) -> FloatArray:
    """Each order's price factor: season, basket noise, rare big baskets, the customer's drift."""
    sigma = BASKET_NOISE_SIGMA * realism.noise
    basket = period.basket[period.months(order_t)] * rng.lognormal(
        -0.5 * sigma**2, sigma, order_t.size
    )
    big = np.flatnonzero(rng.random(order_t.size) < BIG_BASKET_PROB * realism.noise)
    basket[big] *= 1.0 + np.minimum(BIG_BASKET_SCALE * rng.pareto(2.0, big.size), BIG_BASKET_CAP)
    age_years = (order_t - people.first_purchase[order_customer]) / DAYS_PER_YEAR
    return basket * np.exp(people.spend_drift[order_customer] * age_years)
