"""The synthetic retailer's world: its hidden parameters (archetypes, rates, seasons) and types."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from features.schema import KNOWN_EVENTS

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

# The change of the mix of new customers from the start of the period to its end (half taken
# at the start, half added at the end; times the cohort strength): paid and social promotions
# bring ever more deal hunters and one-off buyers, word of mouth ever fewer regulars.
ARCHETYPE_DRIFT = np.array([-0.08, -0.04, 0.07, 0.07, -0.02])

# Shares moved from occasional to one-time buyers among customers acquired in November and
# December (times the season strength): gift shoppers who never come back.
HOLIDAY_ONE_TIME_SHIFT = 0.12

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
# A new customer's mean gap between orders, in seasonal days; it lengthens with age (below).
GAP_MEAN_DAYS = np.array([5.5, 9.5, 15.0, 1.0, 34.0])

# Gamma shape of the inter-purchase gaps: a high shape is a steady rhythm, below 1 is bursty.
GAP_SHAPE = np.array([4.0, 2.0, 1.2, 1.0, 0.8])

# Noise, at noise strength 1. Irregular customers (a share of the repeat buyers) buy in bursts
# and go quiet for long spells; everyone's gaps carry lognormal noise and rare pauses of
# heavy-tailed (Lomax) length, so a long silence is not always churn.
IRREGULAR_SHARE = 0.2

IRREGULAR_GAP_SHAPE = 0.5

GAP_NOISE_SIGMA = (0.35, 0.8)

PAUSE_PROB = (0.02, 0.08)

PAUSE_DAYS = 45.0

PAUSE_TAIL = 1.5

# Stray orders after a customer has stopped buying (one-time buyers included): a win-back
# campaign, a gift, a need only this shop meets. A Poisson rate per year, with a gamma spread
# between customers (shape below 1: most never come back, a few now and then).
STRAY_ORDERS_PER_YEAR = 0.25

STRAY_SHAPE = 0.5

# Amounts: a lognormal basket noise per order, rare big baskets (1 + Lomax, capped), a wider
# spread of customers' price levels, and a per-customer drift of it per year of age.
BASKET_NOISE_SIGMA = 0.35

BIG_BASKET_PROB = 0.02

BIG_BASKET_SCALE = 2.0

BIG_BASKET_CAP = 20.0

SPEND_SCALE_SIGMA = (0.3, 0.2)

SPEND_DRIFT_PER_YEAR = 0.15

# Decaying cohorts, at cohort strength 1: a customer's purchase rate falls with age as
# 1 / sqrt(1 + age / AGE_DECAY_DAYS) (age in seasonal days since the first purchase).
AGE_DECAY_DAYS = 240.0

LINE_MEAN_AMOUNT = np.array([30.0, 90.0, 22.0, 35.0, 35.0])

ANNUAL_HAZARD = np.array([0.10, 0.18, 0.90, 0.0, 0.45])

DISCOUNT_LINE_PROB = np.array([0.06, 0.04, 0.80, 0.12, 0.08])

CONTENT_USER_PROB = np.array([0.45, 0.40, 0.12, 0.05, 0.30])

SESSIONS_PER_MONTH = np.array([1.8, 1.8, 1.3, 0.8, 0.8])

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

# Engagement noise, at noise strength 1: after an exit some browsing lingers (price checks, old
# habits), and a share of customers browse untracked (consent refused, logged out), so only a
# fraction of their visits reach the events table.
LINGERING_BROWSING = 0.15

UNTRACKED_SHARE = 0.25

UNTRACKED_FACTOR = 0.15

# The yearly cycle at season strength 1 (January first; each raised to the strength): order
# intensity, which also shapes acquisition, and basket size. December is the peak, July the low.
MONTH_SEASONALITY = np.array([0.9, 0.82, 0.95, 1.0, 1.0, 0.85, 0.78, 0.8, 0.95, 1.05, 1.4, 1.6])

MONTH_BASKET = np.array([0.95, 0.92, 0.97, 1.0, 1.0, 0.95, 0.9, 0.92, 1.0, 1.0, 1.08, 1.25])

CATEGORY_PRICE = np.array([2.2, 0.45, 1.0, 1.3, 0.7, 0.5])

CATEGORY_MARGIN = np.array([0.23, 0.30, 0.41, 0.35, 0.33, 0.24])

CATEGORY_REFUND_PROB = np.array([0.025, 0.010, 0.035, 0.015, 0.015, 0.008])

DISCOUNT_FRACTIONS = np.array([0.10, 0.15, 0.20, 0.25, 0.30, 0.40])

UPGRADE_PRICE = 3.0


@dataclass(frozen=True)
class Realism:
    """How hard the world is; each strength at 0 switches its difficulty off.

    Attributes:
        noise: strength of heavy-tailed noise in purchase timing and amounts, and of the share
            of irregular customers.
        acausal_churn: the share of churn (repeat customers who stop buying within the period)
            drawn from a hazard independent of every customer trait, and foreshadowed by no event.
        cohort_decay: strength of the decay of purchase rates with customer age and of the drift
            of the acquired mix over the period.
        seasonality: strength of the yearly cycle of order counts, basket size and acquisition.
    """

    noise: float = 1.0
    acausal_churn: float = 0.3
    cohort_decay: float = 1.0
    seasonality: float = 1.0

    def __post_init__(self) -> None:
        for name in ("noise", "cohort_decay", "seasonality"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not 0 <= self.acausal_churn < 1:
            raise ValueError(f"acausal_churn must be in [0, 1), got {self.acausal_churn}")


@dataclass(frozen=True)
class Population:
    """Per-customer latent parameters; time is in days since the start of the data period.

    `death` is when a customer stops buying; `announced_death` is the same time when the churn
    is behavioural (engagement fades and complaints come before it) and +inf when it is acausal.
    """

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
    announced_death: FloatArray
    acausal: BoolArray
    failure: FloatArray
    failure_resolved: BoolArray
    upgrade: FloatArray
    spend_scale: FloatArray
    spend_drift: FloatArray
    gap_mean: FloatArray
    gap_shape: FloatArray
    irregular: BoolArray


@dataclass(frozen=True)
class Period:
    """The data period and its seasonal clock.

    `intensity` is each day's order intensity (mean 1 over a year), `clock` its running total at
    the `grid` days, and `basket` the basket-size factor of each calendar month.
    """

    start_us: int
    days: float
    seconds: int
    grid: FloatArray
    clock: FloatArray
    month: IntArray
    intensity: FloatArray
    basket: FloatArray

    def warp(self, t: FloatArray) -> FloatArray:
        """Seasonal time: one unit is one average day of shopping intensity."""
        return np.interp(t, self.grid, self.clock)

    def unwarp(self, w: FloatArray) -> FloatArray:
        """Calendar days from seasonal time (the clock is strictly increasing)."""
        return np.interp(w, self.clock, self.grid)

    def months(self, t: FloatArray) -> IntArray:
        """Calendar month (0 = January) of each time in the period."""
        return self.month[np.floor(t).astype(np.int64)]


@dataclass(frozen=True)
class Rows:
    """Column arrays of a table before the ids and labels become strings."""

    customer: IntArray
    t: FloatArray
    columns: dict[str, object]
    names: list[str]

    def frame(self, customer_ids: pa.Array, period: Period) -> pd.DataFrame:
        """The contract frame: ids and labels as `str`, times as `datetime64[us]`."""
        data: dict[str, object] = {
            "customer_id": strings(customer_ids, self.customer),
            "ts": timestamps(period, self.t),
        }
        data.update(self.columns)
        return pd.DataFrame(data)[self.names]


def strings(vocabulary: pa.Array, codes: IntArray) -> pd.arrays.ArrowStringArray:
    """A pandas `str` array of `vocabulary[codes]`; negative codes become missing."""
    indices = pa.array(codes, mask=codes < 0) if codes.size else pa.array([], pa.int64())
    taken = vocabulary.take(indices)
    return pd.array(taken, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


def timestamps(period: Period, t: FloatArray) -> pd.DatetimeIndex:
    """Naive UTC `datetime64[us]` stamps, floored to the second, from days since the start."""
    seconds = np.minimum(np.floor(np.asarray(t) * DAY_SECONDS), period.seconds - 1)
    micros = period.start_us + seconds.astype(np.int64) * 1_000_000
    return pd.DatetimeIndex(micros.view("datetime64[us]"))
