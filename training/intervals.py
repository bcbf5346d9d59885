"""Ranges for predicted spend, CLV and customer equity, fitted out of time (validation snapshot).

Each customer's range is split-conformal (Mondrian): the validation snapshot's customers are
binned by their predicted spend, and within a bin the ratio actual / predicted gives the
quantiles that scale the prediction. The bins adapt the width to the level (a big spender's
range is not a small spender's), the ratio to the scale within a bin, and the conformal rank
correction keeps the coverage at the level for a finite bin. Customer equity (a sum over many
customers) gets its own range: the sum of customers' ranges would be far too wide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

LEVEL = 0.8
"""The share of customers whose actual value should fall in their range."""
METHOD = "mondrian-conformal-ratio"
MAX_BINS = 10
# Rows a bin needs for quantiles of its own; fewer, and it joins its neighbour (all of them:
# pooled). 50 rows place the 10% and 90% ranks within a few rows of their targets.
MIN_BIN_ROWS = 50
# Predictions under this share of the mean prediction are "nothing expected": their range
# is additive (the actual spend of such customers), never a multiple of a near-zero number.
FLOOR_SHARE = 0.01


@dataclass(frozen=True)
class SpendIntervals:
    """Conformal spend ranges by bin of predicted spend, and what the equity range needs.

    A prediction `p` in bin `b` gets `[low[b] * s, high[b] * s]` with `s = max(p, floor)`:
    below `floor` the scale is constant, so the range is additive. Bins are `edges` (inner
    boundaries on the prediction, ascending; `numpy.searchsorted(..., side="right")`).

    Attributes:
        level: the nominal coverage (0.8: 80% of customers).
        floor: the smallest scale; predictions below it share one additive range.
        edges: inner bin edges on the predicted spend.
        low: per bin, the ratio actual / scale at the range's low end.
        high: per bin, the ratio at the high end.
        variance: per bin, the variance of the ratio (the equity range adds these up).
        rows: per bin, the validation rows it was fitted on.
        level_sd: relative standard error of the model's overall level on the validation
            rows (the calibration's own sampling error): shared by every customer, so it
            does not average out in a sum.
        level_shift_sd: how far the level moves between windows: the root mean square of the
            log ratio actual / base total over the training and validation snapshots. A
            season or an ageing base moves every customer at once; 0 when not measured.
    """

    level: float
    floor: float
    edges: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    variance: tuple[float, ...]
    rows: tuple[int, ...]
    level_sd: float
    level_shift_sd: float = 0.0

    @classmethod
    def fit(
        cls,
        pred: Any,
        actual: Any,
        level: float = LEVEL,
        *,
        min_bin_rows: int = MIN_BIN_ROWS,
        max_bins: int = MAX_BINS,
    ) -> SpendIntervals:
        """Fit on honest predictions (out of time, cross-fitted) and the spend that followed.

        Within each bin of `n` rows, sorted ratios `r_(1) <= ... <= r_(n)`: the low end is
        `r_(a)` with `a = floor((n + 1) (1 - level) / 2)`, the high end `r_(b)` with
        `b = ceil((n + 1) level) + a` (capped at `n`), which holds `level` of a new
        exchangeable customer's ratios. When `r_(a)` is 0 (a bin where at least the lower
        tail's share buys nothing) nothing lies below the low end, so the whole miss goes
        to the top: `[0, r_(ceil((n + 1) level))]`, not an interval that covers more than
        asked. Too few rows for a bin: pooled with its neighbour; too few in all: the ranks
        are capped at the largest ratio (coverage then below nominal, said by `rows`).

        Args:
            pred: predicted spend per customer (a negative one counts as 0).
            actual: the spend that followed (>= 0, as the labels floor it).
            level: the coverage, strictly between 0 and 1.
            min_bin_rows: fewest rows of a bin.
            max_bins: most bins of positive predictions (plus the floor's bin).

        Raises:
            ValueError: no rows, lengths differ, a value is missing or negative, or the level
                is not in (0, 1).
        """
        p = np.maximum(_checked(pred, "pred", negative=True), 0.0)  # as the bundle floors it
        y = _checked(actual, "actual")
        if p.shape != y.shape:
            raise ValueError(f"{p.size} predictions for {y.size} actual values")
        if p.size == 0:
            raise ValueError("no validation rows to fit spend intervals on")
        if not 0.0 < level < 1.0:
            raise ValueError(f"the interval level must be between 0 and 1, not {level}")
        mean_pred = float(p.mean())
        floor = FLOOR_SHARE * mean_pred if mean_pred > 0 else 1.0
        edges = _merge_small_bins(
            _candidate_edges(p, floor, min_bin_rows, max_bins), p, min_bin_rows
        )
        bins = np.searchsorted(edges, p, side="right")
        ratio = y / np.maximum(p, floor)
        low, high, variance, rows = [], [], [], []
        for b in range(len(edges) + 1):
            lo, hi, var, n = _bin_quantiles(ratio[bins == b], level)
            low.append(lo)
            high.append(hi)
            variance.append(var)
            rows.append(n)
        return cls(
            level=float(level),
            floor=float(floor),
            edges=tuple(float(e) for e in edges),
            low=tuple(low),
            high=tuple(high),
            variance=tuple(variance),
            rows=tuple(rows),
            level_sd=_level_sd(p, y),
        )

    def bins(self, pred: Any) -> np.ndarray:
        """Each prediction's bin."""
        return np.searchsorted(np.asarray(self.edges, dtype=float), _floats(pred), side="right")

    def bounds(self, pred: Any) -> tuple[np.ndarray, np.ndarray]:
        """The low and high ends of each prediction's range (NaN for a missing prediction)."""
        p = _floats(pred)
        bins = self.bins(p)
        scale = np.maximum(p, self.floor)  # NaN stays NaN
        low = np.asarray(self.low)[bins] * scale
        high = np.asarray(self.high)[bins] * scale
        return low, high

    def equity_interval(
        self, pred: Any, value: Any, value_per_spend: float | None = None
    ) -> tuple[float, float]:
        """The range of a sum of customers' values (customer equity), at this level.

        The sum is many customers' outcomes: their own noise mostly cancels, the shared
        level error does not. Method: each customer's actual value varies around their
        prediction with the variance of their bin's ratio times their scale squared (in
        value: times the value per unit of spend, `value / pred`); customers independently,
        and the model's overall level with `level_sd` (the standard error of the ratio of
        totals actual / predicted on the validation rows, for a calibration learned from
        them) for all at once. The total's variance is the sum of the two; the range is the
        normal one around the predicted total, its low end floored at 0. It does not hold
        a shift of the level between the validation window and the scored one (a season,
        an ageing base): the backtest measures that.

        Args:
            pred: predicted spend per customer (the bins' key).
            value: the value summed per customer (CLV; the spend itself for spend).
            value_per_spend: value per unit of spend for customers predicted to spend
                nothing (their value is 0, their ratio unknown); None: the median of the
                others' (1 when there are none).

        Returns:
            The low and high ends of the total's range (NaN, NaN for no customers).
        """
        p, v = _floats(pred), _floats(value)
        if p.shape != v.shape:
            raise ValueError(f"{p.size} predictions for {v.size} values")
        known = np.isfinite(p) & np.isfinite(v)
        p, v = p[known], v[known]
        if p.size == 0:
            return math.nan, math.nan
        per_spend = np.zeros_like(p)
        spends = p > 0
        per_spend[spends] = v[spends] / p[spends]
        if value_per_spend is None:
            value_per_spend = float(np.median(per_spend[spends])) if spends.any() else 1.0
        per_spend[~spends] = value_per_spend
        scale = np.maximum(p, self.floor) * per_spend
        spread = np.asarray(self.variance)[self.bins(p)] * scale**2
        total = float(v.sum())
        level_sd = math.hypot(self.level_sd, self.level_shift_sd)
        sd = math.sqrt(float(spread.sum()) + (level_sd * total) ** 2)
        z = NormalDist().inv_cdf((1.0 + self.level) / 2.0)
        return max(total - z * sd, 0.0), total + z * sd

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as `ModelBundle.config["spend_intervals"]` stores it."""
        return {
            "method": METHOD,
            "level": self.level,
            "floor": self.floor,
            "edges": list(self.edges),
            "low": list(self.low),
            "high": list(self.high),
            "variance": list(self.variance),
            "rows": list(self.rows),
            "level_sd": self.level_sd,
            "level_shift_sd": self.level_shift_sd,
        }

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> SpendIntervals:
        """Read what `to_dict` wrote.

        Raises:
            ValueError: another method, or the lists do not fit together.
        """
        if stored.get("method") != METHOD:
            raise ValueError(f"spend intervals by {stored.get('method')!r}; expected {METHOD!r}")
        intervals = cls(
            level=float(stored["level"]),
            floor=float(stored["floor"]),
            edges=tuple(float(e) for e in stored["edges"]),
            low=tuple(float(x) for x in stored["low"]),
            high=tuple(float(x) for x in stored["high"]),
            variance=tuple(float(x) for x in stored["variance"]),
            rows=tuple(int(x) for x in stored["rows"]),
            level_sd=float(stored["level_sd"]),
            level_shift_sd=float(stored.get("level_shift_sd", 0.0)),
        )
        n_bins = len(intervals.edges) + 1
        lengths = {len(getattr(intervals, k)) for k in ("low", "high", "variance", "rows")}
        if lengths != {n_bins} or list(intervals.edges) != sorted(intervals.edges):
            raise ValueError(
                f"spend intervals: {n_bins} bins from {len(intervals.edges)} ascending edges "
                f"expected in low, high, variance and rows; got lengths {sorted(lengths)}"
            )
        return intervals


def coverage(actual: Any, low: Any, high: Any) -> float:
    """Share of rows whose actual value lies in its range (ends included).

    NaN when there are no rows or some range is missing (a model without intervals).
    """
    y, lo, hi = _floats(actual), _floats(low), _floats(high)
    if y.size == 0 or np.isnan(lo).any() or np.isnan(hi).any():
        return math.nan
    return float(((y >= lo) & (y <= hi)).mean())


def crossfit_bounds(
    pred: Any, actual: Any, keys: pd.Series, level: float = LEVEL
) -> tuple[np.ndarray, np.ndarray]:
    """Ranges of the validation rows where no row's range was fitted on that row.

    Two folds by customer hash (as `training.train.crossfit` calibrates): each fold's
    ranges come from intervals fitted on the other. The honest coverage of the fitted
    ranges on the validation snapshot; one fold alone (tiny data) is fitted on itself.
    """
    p, y = _floats(pred), _floats(actual)
    fold = (pd.util.hash_pandas_object(keys, index=False).to_numpy() % 2).astype(bool)
    if fold.all() or not fold.any():
        return SpendIntervals.fit(p, y, level).bounds(p)
    low, high = np.empty_like(p), np.empty_like(p)
    for held_out in (fold, ~fold):
        fitted = SpendIntervals.fit(p[~held_out], y[~held_out], level)
        low[held_out], high[held_out] = fitted.bounds(p[held_out])
    return low, high


def interval_metrics(
    pred: Any, actual: Any, keys: pd.Series, active: Any, level: float = LEVEL
) -> dict[str, float]:
    """Cross-fitted coverage and width of the spend ranges on the validation rows.

    Returns:
        `spend_interval_coverage` over the decision population (`active`; NaN when empty)
        and `..._all` over every row; `spend_interval_width` (mean width over mean actual
        spend) and `spend_interval_zero_share` (rows whose range is 0..0: at least the
        level of their kind buy nothing, so they are covered more often than the level,
        the one way the coverage exceeds it) likewise; `spend_interval_level`.
    """
    y = _floats(actual)
    low, high = crossfit_bounds(pred, y, keys, level)
    mask = np.asarray(active, dtype=bool)
    out = {"spend_interval_level": float(level)}
    for suffix, rows in (("", mask), ("_all", np.ones_like(mask))):
        mean_actual = float(y[rows].mean()) if rows.any() else math.nan
        width = float((high - low)[rows].mean()) if rows.any() else math.nan
        out[f"spend_interval_coverage{suffix}"] = (
            coverage(y[rows], low[rows], high[rows]) if rows.any() else math.nan
        )
        out[f"spend_interval_width{suffix}"] = width / mean_actual if mean_actual > 0 else math.nan
        out[f"spend_interval_zero_share{suffix}"] = (
            float((high[rows] == 0).mean()) if rows.any() else math.nan
        )
    return out


def _floats(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=float).ravel()


def _checked(values: Any, name: str, negative: bool = False) -> np.ndarray:
    """The values as floats; missing ones (and negative ones unless allowed) refused."""
    array = _floats(values)
    bad = np.flatnonzero(~np.isfinite(array) | (False if negative else array < 0))
    if bad.size:
        what = "missing" if negative else "missing or negative"
        raise ValueError(
            f"spend intervals: {name} holds {bad.size} {what} values "
            f"(rows {', '.join(str(i) for i in bad[:5])})"
        )
    return array


def _candidate_edges(
    pred: np.ndarray, floor: float, min_bin_rows: int, max_bins: int
) -> list[float]:
    """The floor (when enough predictions lie below it), then quantiles of the rest."""
    above = pred[pred >= floor]
    edges = [floor] if (pred < floor).sum() >= min_bin_rows else []
    n_bins = min(max_bins, above.size // max(min_bin_rows, 1))
    if n_bins >= 2:
        inner = np.quantile(above, np.arange(1, n_bins) / n_bins)
        edges += [float(e) for e in np.unique(inner) if e > floor]
    return edges


def _merge_small_bins(edges: list[float], pred: np.ndarray, min_bin_rows: int) -> np.ndarray:
    """Drop edges until every bin holds `min_bin_rows` (ties can leave a bin short)."""
    kept = list(edges)
    while kept:
        counts = np.bincount(np.searchsorted(kept, pred, side="right"), minlength=len(kept) + 1)
        small = int(np.argmin(counts))
        if counts[small] >= min_bin_rows:
            break
        if small == 0:
            kept.pop(0)
        elif small == len(kept) or counts[small - 1] <= counts[small + 1]:
            kept.pop(small - 1)  # join the smaller neighbour (the left one at the top)
        else:
            kept.pop(small)
    return np.asarray(kept, dtype=float)


def _bin_quantiles(ratio: np.ndarray, level: float) -> tuple[float, float, float, int]:
    """Low and high conformal ends, variance and size of one bin's ratios."""
    n = ratio.size
    if n == 0:  # only for a bin the edges left empty: nothing known, nothing claimed
        return 0.0, 0.0, 0.0, 0
    ordered = np.sort(ratio)
    a = math.floor((n + 1) * (1.0 - level) / 2.0)
    low = float(ordered[a - 1]) if a >= 1 else 0.0
    b = math.ceil((n + 1) * level) + (a if low > 0 else 0)
    high = float(ordered[min(b, n) - 1])
    variance = float(ordered.var(ddof=1)) if n > 1 else 0.0
    return low, high, variance, n


def _level_sd(pred: np.ndarray, actual: np.ndarray) -> float:
    """Relative standard error of the ratio of totals actual / predicted (delta method).

    The large-sample limit of a customer bootstrap of that ratio; deterministic.
    """
    total_pred, total_actual = float(pred.sum()), float(actual.sum())
    if total_pred <= 0 or total_actual <= 0:
        return 0.0
    ratio = total_actual / total_pred
    return float(np.sqrt(np.sum((actual - ratio * pred) ** 2)) / total_actual)
