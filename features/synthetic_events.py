"""Synthetic events: sessions, content, messages, surveys and support over each life."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from features.schema import EVENTS
from features.synthetic_world import (
    AFTER_DEATH_FACTOR,
    APP,
    CUSTOM_EVENT,
    DAYS_PER_MONTH,
    DAYS_PER_YEAR,
    DECLINE_DAYS,
    DECLINE_FACTOR,
    EMAIL,
    EVENT_CHANNELS,
    EVENT_CODE,
    EVENT_NAMES,
    LINGERING_BROWSING,
    NO_CHANNEL,
    NPS_MEAN,
    ONE_TIME,
    PAYMENT_LATE_PER_YEAR,
    PURCHASE_CHANNELS,
    PUSH,
    REFERRALS_PER_YEAR,
    SESSIONS_PER_MONTH,
    SMS,
    UNTRACKED_FACTOR,
    UNTRACKED_SHARE,
    WEB,
    FloatArray,
    IntArray,
    Period,
    Population,
    Realism,
    Rows,
    strings,
)


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


def _visible_signup(people: Population) -> FloatArray:
    """Signup times clipped to the start of the period, which no event row precedes."""
    return np.maximum(people.signup, 0.0)


def _phased_times(
    rng: np.random.Generator,
    rate: FloatArray,
    people: Population,
    period: Period,
    decline: float,
    after: float,
) -> tuple[IntArray, FloatArray]:
    """Events at `rate` while active, `decline` x rate in the last weeks, `after` x once gone.

    Only a behavioural exit has last weeks: an acausal one cuts the rate from full to `after`.
    """
    end = np.full(rate.size, period.days)
    begin = _visible_signup(people)
    alive_end = np.minimum(people.death, end)
    fade = np.clip(people.announced_death - DECLINE_DAYS, begin, alive_end)
    parts = [
        _poisson_times(rng, rate, begin, fade),
        _poisson_times(rng, rate * decline, fade, alive_end),
        _poisson_times(rng, rate * after, alive_end, end),
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def draw_events(
    rng: np.random.Generator,
    people: Population,
    period: Period,
    realism: Realism | None = None,
) -> Rows:
    """Engagement, messaging, support and survey events, in a shuffled row order.

    `realism` (the default strengths when None) sets how noisy engagement is.
    """
    realism = Realism() if realism is None else realism
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
    untracked = rng.random(n) < min(UNTRACKED_SHARE * realism.noise, 1.0)
    seen = np.where(untracked, UNTRACKED_FACTOR, 1.0)
    after = AFTER_DEATH_FACTOR + LINGERING_BROWSING * realism.noise
    for name, scale in (("session", 1.0), ("product_view", 0.25), (CUSTOM_EVENT, 0.08)):
        c, t = _phased_times(rng, activity * scale * seen, people, period, DECLINE_FACTOR, after)
        value = rng.lognormal(np.log(6.0), 0.7, c.size) if name == "session" else None
        buf.add(name, c, t, value, web_or_app(c))
    content_rate = np.where(people.content_user, 0.5 / DAYS_PER_MONTH, 0.0) * seen
    c, t = _phased_times(rng, content_rate, people, period, DECLINE_FACTOR, after)
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
        "event": strings(pa.array(EVENT_NAMES), np.concatenate(buf.code)[shuffle]),
        "value": np.concatenate(buf.value)[shuffle],
        "channel": strings(pa.array(EVENT_CHANNELS), channel_codes),
    }
    return Rows(customer[shuffle], t[shuffle], columns, EVENTS.column_names)


def _add_support(
    rng: np.random.Generator,
    buf: _EventBuffer,
    people: Population,
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
    # Some customers who are about to leave say so first, without a ticket (none of the acausal
    # leavers: nothing foreshadows their exit).
    leaving = np.flatnonzero(
        (people.announced_death < days) & (people.archetype != ONE_TIME) & (rng.random(n) < 0.15)
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
        (people.announced_death < days)
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
        - np.where(nps_t > people.announced_death[nps_c] - 60.0, 3.0, 0.0)
    )
    nps = np.clip(np.rint(rng.normal(mean, 1.4)), 0, 10)
    buf.add("nps", nps_c, nps_t, nps)
