"""The season of a forecast window: how much the base spends then against its yearly average.

A BTYD base extrapolates each customer's average rate, so a horizon holding a peak (December)
or a low (July) is forecast at the year's average level. The base's own history says how far
off that is: the same calendar window a year earlier, against the year centred on it (so a
growing or shrinking base does not read as a season). Estimated only from rows before the
cutoff; a history too short to hold that centred year gets no index (the level stays the base's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

YEAR_DAYS = 365.0


@dataclass(frozen=True)
class SeasonalLevel:
    """The seasonal index applied to spend as of the training date, and what decided it."""

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
            why = "no index: the history does not hold a year centred on last year's window"
        elif not self.used:
            why = "not used: it made the validation total worse"
        elif self.validation_index is None:
            why = "used; not validated (the validation cutoff's history is too short)"
        else:
            why = "used: it brought the validation total closer"
        return {
            "index": self.index,
            "validation_index": self.validation_index,
            "validation_total_error": self.validation_error,
            "validation_total_error_without": self.validation_error_without,
            "used": self.used,
            "decision": why,
        }


def season_index(transactions: pd.DataFrame, as_of: pd.Timestamp, days: float) -> float | None:
    """Spend per day in last year's `[as_of, as_of + days)` over that of the year centred on it.

    Reads only transactions before `as_of` (the whole centred year ends before it while
    `days` <= 365). None when the history starts after the centred year does, or it holds
    no spend.
    """
    if not 0 < days <= YEAR_DAYS:
        return None
    ts = transactions["ts"].to_numpy()
    amount = transactions["amount"].to_numpy(dtype=float)
    start = as_of - pd.Timedelta(days=YEAR_DAYS)
    middle = start + pd.Timedelta(days=days / 2)
    year_start = middle - pd.Timedelta(days=YEAR_DAYS / 2)
    year_end = middle + pd.Timedelta(days=YEAR_DAYS / 2)
    before = ts < np.datetime64(as_of)
    if not before.any() or ts[before].min() > np.datetime64(year_start):
        return None
    window = amount[
        (ts >= np.datetime64(start)) & (ts < np.datetime64(start + pd.Timedelta(days=days)))
    ]
    year = amount[(ts >= np.datetime64(year_start)) & (ts < np.datetime64(year_end))]
    yearly = year.sum() / YEAR_DAYS
    if yearly <= 0:
        return None
    return max(float(window.sum() / days / yearly), 0.0) or None


def seasonal_level(
    transactions: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon_days: int,
    valid_cutoff: pd.Timestamp | None,
    label_days: int,
    valid_actual: np.ndarray,
    valid_predicted: np.ndarray,
) -> SeasonalLevel:
    """Decide the seasonal index of spend: computed as of T, kept unless validation refutes it.

    On the validation snapshot (predictions at the base's total, as at T) the index of its own
    cutoff and label window must not move the total further from what happened.
    """
    index = season_index(transactions, as_of, horizon_days)
    valid_index = (
        None
        if valid_cutoff is None or not len(valid_actual)
        else season_index(transactions, valid_cutoff, label_days)
    )
    error = error_without = None
    if valid_index is not None:
        actual = float(valid_actual.sum())
        predicted = float(valid_predicted.sum())
        if actual > 0:
            error_without = predicted / actual - 1
            error = predicted * valid_index / actual - 1
    used = index is not None and (error is None or abs(error) <= abs(error_without or 0.0))
    return SeasonalLevel(index, valid_index, error, error_without, used)


def level_move_sd(
    totals: list[tuple[pd.Timestamp, float, float]],
    transactions: pd.DataFrame,
    days: int,
    seasonal: bool,
) -> float:
    """How far the spend level moved between past windows: the customer equity range's share.

    The root mean square, over snapshots, of the log ratio of what followed to the base's
    total (times the snapshot's own seasonal index when the model uses one). 0 for none.
    """
    moves = []
    for cutoff, actual, predicted in totals:
        index = season_index(transactions, cutoff, days) if seasonal else None
        expected = predicted * (index or 1.0)
        if actual > 0 and expected > 0:
            moves.append(np.log(actual / expected))
    return float(np.sqrt(np.mean(np.square(moves)))) if moves else 0.0
