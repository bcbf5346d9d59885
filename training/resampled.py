"""Metrics of many bootstrap resamples at once: `training.metrics` over draw counts, vectorised.

A resample is a count per row (how often the row was drawn). Each predictor's rows are sorted
once into groups of tied scores; every metric of `churn_metrics` and `spend_metrics` is then a
sum over those groups' counts (ranks, tie-shared top deciles, equal-frequency bins), for a whole
chunk of resamples at once, with no sort per resample. `training.metrics` stays the definition:
the tests hold both equal on the same resample, and a metric without a fast path here is computed
by it, resample by resample.

Inside, counts are laid out rows x resamples, so that gathering rows in a predictor's order
moves whole contiguous lines of resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from training.metrics import LOG_LOSS_EPS, TOP_PARTS, churn_metrics, spend_metrics

FloatArray = NDArray[np.float64]
MetricsOf = Callable[[ArrayLike, ArrayLike], dict[str, float]]

METRICS_OF: dict[str, MetricsOf] = {"churn": churn_metrics, "spend": spend_metrics}
# Resamples are drawn in chunks of about this many counts (customers x resamples) in memory.
CHUNK_CELLS = 2_000_000


class TieGroups:
    """A predictor's rows sorted by ascending score, in groups of equal scores."""

    def __init__(self, score: FloatArray) -> None:
        self.order = np.argsort(score, kind="stable")
        ordered = score[self.order]
        first = np.r_[True, ordered[1:] != ordered[:-1]]
        self.starts = np.flatnonzero(first)
        self.values = ordered[self.starts]
        self.group = np.empty(score.size, dtype=np.intp)
        self.group[self.order] = np.cumsum(first) - 1
        self.untied = self.starts.size == score.size

    def sums(self, draws: FloatArray, values: FloatArray | None = None) -> FloatArray:
        """Per group and resample: the draws' count, or the sum of `values` over the draws."""
        ordered = draws[self.order]
        if values is not None:
            ordered *= values[self.order, None]
        return ordered if self.untied else np.add.reduceat(ordered, self.starts, axis=0)


def _dot(a: FloatArray, b: FloatArray) -> FloatArray:
    """Per resample (column), the sum over groups of a x b."""
    return np.einsum("ij,ij->j", a, b)


def _divide(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """Element-wise quotient, NaN where the denominator is 0."""
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    return np.divide(numerator, denominator, out=out, where=denominator != 0)


class _Ranked:
    """One chunk of resamples over a predictor's tie groups (ascending score): counts, ranks."""

    def __init__(self, draws: FloatArray, groups: TieGroups) -> None:
        self.counts = groups.sums(draws)
        cumulative = np.cumsum(self.counts, axis=0)
        self.size = cumulative[-1].copy()
        self.below = cumulative - self.counts  # draws scored lower: the group's first rank - 1
        self.above = self.size - cumulative  # draws scored higher

    def top_sum(self, values: FloatArray) -> FloatArray:
        """Sum of `values` over the top ceil(n / 10) draws by score, ties shared pro rata."""
        share = np.zeros_like(self.counts)
        top = np.ceil(self.size / TOP_PARTS)
        np.divide(top - self.above, self.counts, out=share, where=self.counts > 0)
        np.clip(share, 0.0, 1.0, out=share)
        return _dot(values, share)

    def bin_sums(self, ahead: FloatArray, *values: FloatArray) -> list[FloatArray]:
        """Sums of each of `values` in 10 equal-frequency bins (bins x resamples).

        A group's bin is floor(10 x `ahead` / n), `ahead` the draws before it in bin order, as
        `training.metrics._rank_bins` has it. A group no draw fell in may get bin 10, counted in
        an 11th bin that is dropped: it adds 0 anyway.
        """
        parts = TOP_PARTS + 1
        resamples = ahead.shape[1]
        # Whole numbers: the quotient is exact to far below 1 / n, so truncating it floors it.
        index = (ahead * TOP_PARTS / self.size).astype(np.intp)
        index *= resamples
        index += np.arange(resamples)
        flat = index.ravel()
        return [
            np.bincount(flat, weights=v.ravel(), minlength=parts * resamples)
            .reshape(parts, resamples)[:TOP_PARTS]
            .astype(np.float64)
            for v in values
        ]

    def gini(self, values: FloatArray) -> FloatArray:
        """`training.metrics._gini` of `values` by descending score: the gain curve's mean gap."""
        area = _dot(values, self.size - self.above + 0.5 - self.counts / 2)
        return _divide(area, self.size * values.sum(axis=0)) - (self.size + 1) / (2 * self.size)

    def centred_ranks(self, groups: TieGroups) -> FloatArray:
        """Each row's average rank in each resample, minus the mean rank (n + 1) / 2."""
        ranks = self.below + (self.counts + 1) / 2 - (self.size + 1) / 2
        return ranks[groups.group]

    def distinct(self) -> NDArray[np.int64]:
        """How many different scores each resample drew."""
        return np.count_nonzero(self.counts, axis=0)


def _churn(draws: FloatArray, y: FloatArray, prob: FloatArray, groups: TieGroups) -> dict:
    """`churn_metrics` per resample (columns of `draws`, rows x resamples)."""
    ranked = _Ranked(draws, groups)
    counts, size = ranked.counts, ranked.size
    churners = groups.sums(draws, y)
    churners_below = np.cumsum(churners, axis=0)
    positives = churners_below[-1].copy()
    churners_below -= churners
    # A churner outranks the stayers scored lower, and half the stayers tied with it.
    outranked = _dot(churners, ranked.below - churners_below + (counts - churners) / 2)
    both = (positives > 0) & (positives < size)
    roc_auc = np.where(both, _divide(outranked, positives * (size - positives)), np.nan)
    # Precision at each threshold: churners among the draws scored at it or higher.
    precision = np.zeros_like(counts)
    flagged = ranked.above + counts
    np.divide(positives - churners_below, flagged, out=precision, where=flagged > 0)
    top = ranked.top_sum(churners)
    clipped = np.clip(prob, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    losses = -(y * np.log(clipped) + (1 - y) * np.log1p(-clipped))
    (gaps,) = ranked.bin_sums(ranked.below, churners - counts * groups.values[:, None])
    return {
        "roc_auc": roc_auc,
        "pr_auc": _divide(_dot(churners, precision), positives),
        "brier": (prob - y) ** 2 @ draws / size,
        "log_loss": losses @ draws / size,
        "top_decile_lift": _divide(top / np.ceil(size / TOP_PARTS), positives / size),
        "top_decile_capture": _divide(top, positives),
        "ece": np.abs(gaps).sum(axis=0) / size,
    }


class _Actuals:
    """What every spend predictor's metrics share in one chunk of resamples: the actuals' side."""

    def __init__(self, draws: FloatArray, y: FloatArray, groups: TieGroups) -> None:
        ranked = _Ranked(draws, groups)
        values = ranked.counts * groups.values[:, None]
        self.total = values.sum(axis=0)
        self.ranks = ranked.centred_ranks(groups)
        self.spread = np.einsum("ij,ij,ij->j", draws, self.ranks, self.ranks)
        self.constant = ranked.distinct() <= 1
        perfect = ranked.gini(values)
        # All actuals equal: the perfect Gini is 0 up to rounding, and the ratio undefined.
        self.perfect = np.where(np.abs(perfect) > 1e-12, perfect, np.nan)


def _spend(
    draws: FloatArray, y: FloatArray, pred: FloatArray, groups: TieGroups, actuals: _Actuals
) -> dict:
    """`spend_metrics` per resample (columns of `draws`, rows x resamples)."""
    ranked = _Ranked(draws, groups)
    size, total = ranked.size, actuals.total
    spent = groups.sums(draws, y)
    ranks = ranked.centred_ranks(groups)
    spread = np.einsum("ij,ij,ij->j", draws, ranks, ranks)
    covariance = np.einsum("ij,ij,ij->j", draws, ranks, actuals.ranks)
    constant = actuals.constant | (ranked.distinct() <= 1)
    spearman = np.where(constant, np.nan, _divide(covariance, np.sqrt(spread * actuals.spread)))
    gini = np.where(total != 0, ranked.gini(spent), np.nan)
    # Decile 1 holds the highest predictions: a group's bin counts the draws above it.
    predicted, happened = ranked.bin_sums(
        ranked.above, ranked.counts * groups.values[:, None], spent
    )
    kept = happened != 0
    errors = np.zeros_like(happened)
    np.divide(np.abs(predicted - happened), np.abs(happened), out=errors, where=kept)
    return {
        "spearman": spearman,
        "normalized_gini": gini / actuals.perfect,
        "mae": np.abs(pred - y) @ draws / size,
        "rmse": np.sqrt((pred - y) ** 2 @ draws / size),
        "top_decile_capture": _divide(ranked.top_sum(spent), total),
        "decile_mape": _divide(errors.sum(axis=0), kept.sum(axis=0).astype(np.float64)),
        "total_error": _divide(pred @ draws, total) - 1,
    }


def _checked(counts: ArrayLike, y_true: ArrayLike, pred: ArrayLike) -> tuple[FloatArray, ...]:
    """Counts laid out rows x resamples, and the two value arrays."""
    draws = np.ascontiguousarray(np.atleast_2d(np.asarray(counts, dtype=np.float64)).T)
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(pred, dtype=np.float64).ravel()
    if not (draws.shape[0] == y.size == p.size):
        raise ValueError(f"{draws.shape[0]} counts per resample for {y.size} and {p.size} values")
    if np.any(draws.sum(axis=0) <= 0):
        raise ValueError("every resample must draw at least one row")
    return draws, y, p


def resampled_churn_metrics(
    counts: ArrayLike, y_true: ArrayLike, p: ArrayLike
) -> dict[str, FloatArray]:
    """`churn_metrics` of each resample, each row repeated as often as `counts` says.

    Args:
        counts: draws of each row, one resample per row of a 2-d array (whole numbers).
        y_true: observed churn, 0 or 1, per row.
        p: predicted churn probability per row.

    Returns:
        Each metric of `churn_metrics` but `base_rate`: one value per resample.
    """
    draws, y, prob = _checked(counts, y_true, p)
    return _churn(draws, y, prob, TieGroups(prob))


def resampled_spend_metrics(
    counts: ArrayLike, y_true: ArrayLike, pred: ArrayLike
) -> dict[str, FloatArray]:
    """`spend_metrics` of each resample, each row repeated as often as `counts` says.

    Args:
        counts: draws of each row, one resample per row of a 2-d array (whole numbers).
        y_true: observed value per row.
        pred: predicted value per row.

    Returns:
        Each metric of `spend_metrics` but `total_abs_error`: one value per resample.
    """
    draws, y, prediction = _checked(counts, y_true, pred)
    return _spend(draws, y, prediction, TieGroups(prediction), _Actuals(draws, y, TieGroups(y)))


def draw_counts(rng: np.random.Generator, resamples: int, rows: int) -> FloatArray:
    """How often each row is drawn in each of `resamples` draws of `rows` rows: rows x resamples."""
    picks = rng.integers(0, rows, size=(resamples, rows))
    picks *= resamples
    picks += np.arange(resamples)[:, None]
    counts = np.bincount(picks.ravel(), minlength=resamples * rows)
    return counts.reshape(rows, resamples).astype(np.float64)


def _generic(
    metrics_of: MetricsOf, draws: FloatArray, y: FloatArray, p: FloatArray, metric: str
) -> FloatArray:
    """`metrics_of` on each resample, one call per resample (metrics without a fast path)."""
    rows = np.arange(y.size)
    picked = (np.repeat(rows, column.astype(np.intp)) for column in draws.T)
    return np.array([metrics_of(y[take], p[take])[metric] for take in picked])


def bootstrap_metrics(
    target: str,
    actual: ArrayLike,
    predictions: Mapping[str, ArrayLike],
    metrics: Sequence[str],
    resamples: int,
    rng: np.random.Generator,
) -> dict[str, dict[str, FloatArray]]:
    """Each predictor's metrics over the same resamples of the rows.

    Args:
        target: "churn" or "spend" (which metrics function defines them).
        actual: observed outcome per row.
        predictions: name -> prediction per row.
        metrics: metric names of that target's metrics function.
        resamples: how many resamples.
        rng: the random draws.

    Returns:
        name -> metric -> one value per resample.
    """
    y = np.asarray(actual, dtype=np.float64)
    preds = {name: np.asarray(p, dtype=np.float64) for name, p in predictions.items()}
    groups = {name: TieGroups(p) for name, p in preds.items()}
    actual_groups = TieGroups(y) if target == "spend" else None
    out = {name: {m: np.empty(resamples) for m in metrics} for name in preds}
    chunk = max(1, CHUNK_CELLS // max(y.size, 1))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        draws = draw_counts(rng, size, y.size)
        shared = _Actuals(draws, y, actual_groups) if actual_groups is not None else None
        for name, p in preds.items():
            fast = (
                _spend(draws, y, p, groups[name], shared)
                if shared is not None
                else _churn(draws, y, p, groups[name])
            )
            for metric in metrics:
                out[name][metric][start : start + size] = (
                    fast[metric]
                    if metric in fast
                    else _generic(METRICS_OF[target], draws, y, p, metric)
                )
    return out
