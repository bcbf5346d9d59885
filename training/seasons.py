"""The season of a forecast window: how far the base's level was off in that window last year.

A BTYD base extrapolates each customer's own average, so its level misses in a season: after a
December peak the customers look busier than they will be (on the generated shop January's
90 days are over-forecast by 40%), before one they look quieter (October under by 40%). The
miss repeats with the calendar, so the same window a year earlier measures it: the base fitted
as of `T - 1 year` on that day's customers, against the spend that followed in its window,
all before `T`. The spend level of the forecast moves by that ratio. A history too short for
a base a year before `T` gets none (the level stays the base's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.build import build_features
from features.labels import build_labels
from features.schema import Tables
from training.btyd.base import BtydBase

YEAR = pd.DateOffset(years=1)
# The least history a base a year before T is fitted on (shorter: no seasonal level).
MIN_HISTORY_DAYS = 90


@dataclass(frozen=True)
class SeasonalLevel:
    """The seasonal level applied to spend as of the training date, and what decided it."""

    index: float | None  # at the training date over the horizon; None: history too short
    validation_index: float | None  # at the validation cutoff over its label window
    validation_error: float | None  # relative total error on validation with the index
    validation_error_without: float | None  # ... and without it
    used: bool

    @property
    def log_shift(self) -> float:
        """What the spend margin moves by: the log index when used, else 0."""
        return float(np.log(self.index)) if self.used and self.index else 0.0

    def describe(self) -> dict[str, object]:
        """The bundle's record of the decision (`config["season"]`)."""
        if self.index is None:
            why = "no index: the history does not hold a base a year before the training date"
        elif not self.used:
            why = "not used: it made the validation total worse"
        elif self.validation_index is None:
            why = "used; not validated (the validation cutoff's history is too short)"
        else:
            why = "used: it brought the validation total closer"
        return {
            "method": "last year's level of the base in the same window",
            "index": self.index,
            "validation_index": self.validation_index,
            "validation_total_error": self.validation_error,
            "validation_total_error_without": self.validation_error_without,
            "used": self.used,
            "decision": why,
        }


def last_year_level(tables: Tables, as_of: pd.Timestamp, days: int, family: str) -> float | None:
    """Spend that followed over the base's forecast, in `[as_of - 1 year, + days)`.

    Reads only rows before `as_of` (the window ends before it while `days` <= 365). None when
    the history a year before `as_of` is under `MIN_HISTORY_DAYS`, or nothing was forecast or
    spent then.
    """
    then = pd.Timestamp(as_of) - YEAR
    if not 0 < days <= (pd.Timestamp(as_of) - then).days:
        return None
    first = tables.transactions["ts"].min()
    if pd.isna(first) or (then - first).days < MIN_HISTORY_DAYS:
        return None
    known = tables.before(pd.Timestamp(as_of))
    features = build_features(known, then)
    if features.empty:
        return None
    try:
        base = BtydBase.fit(features, family)
    except ValueError:
        return None
    forecast = float(np.exp(base.spend_margin(features, days)).sum())
    labels = build_labels(known, then, None, days).set_index("customer_id")["future_spend"]
    actual = float(labels.reindex(features["customer_id"]).fillna(0.0).sum())
    return actual / forecast if forecast > 0 and actual > 0 else None


def seasonal_level(
    tables: Tables,
    as_of: pd.Timestamp,
    horizon_days: int,
    valid_cutoff: pd.Timestamp | None,
    label_days: int,
    valid_actual: np.ndarray,
    valid_predicted: np.ndarray,
    family: str,
) -> SeasonalLevel:
    """Decide the seasonal level of spend: measured as of T, kept unless validation refutes it.

    On the validation snapshot (predictions at the base's total, as at T) the level of its own
    cutoff and label window must not move the total further from what happened.
    """
    index = last_year_level(tables, as_of, horizon_days, family)
    valid_index = (
        None
        if index is None or valid_cutoff is None or not len(valid_actual)
        else last_year_level(tables, valid_cutoff, label_days, family)
    )
    error = error_without = None
    actual = float(valid_actual.sum())
    if valid_index is not None and actual > 0:
        predicted = float(valid_predicted.sum())
        error_without = predicted / actual - 1
        error = predicted * valid_index / actual - 1
    used = index is not None and (error is None or abs(error) <= abs(error_without or 0.0))
    return SeasonalLevel(index, valid_index, error, error_without, used)


def level_move_sd(
    totals: list[tuple[pd.Timestamp, float, float]],
    level: Callable[[pd.Timestamp], float | None] | None = None,
) -> float:
    """How far the spend level moved between past windows: the customer equity range's share.

    The root mean square, over snapshots, of the log ratio of what followed to the base's
    total (times the snapshot's own seasonal `level` when the model uses one). 0 for none.
    """
    moves = []
    for cutoff, actual, predicted in totals:
        expected = predicted * ((level(cutoff) if level else None) or 1.0)
        if actual > 0 and expected > 0:
            moves.append(np.log(actual / expected))
    return float(np.sqrt(np.mean(np.square(moves)))) if moves else 0.0
