"""Out-of-time evaluation metrics for churn probabilities and spend predictions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

FloatArray = NDArray[np.float64]

# Probabilities are clipped this far from 0 and 1 so one confident miss costs a large but
# finite log loss.
LOG_LOSS_EPS = 1e-15
# The "top decile" is the top ceil(n / TOP_PARTS) customers.
TOP_PARTS = 10


def _pair(y_true: ArrayLike, pred: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Two finite, non-empty, one-dimensional float arrays of the same length."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(pred, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values but the prediction has {p.size}")
    if y.size == 0:
        raise ValueError("cannot evaluate on zero rows")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(p))):
        raise ValueError("y_true and predictions must be finite (found NaN or infinity)")
    return y, p


def _binary(y_true: ArrayLike, p: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validated 0/1 labels and probabilities in [0, 1]."""
    y, prob = _pair(y_true, p)
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y_true must hold only 0 and 1")
    if np.any(prob < 0) or np.any(prob > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    return y, prob


def _rank_bins(score: FloatArray, bins: int) -> NDArray[np.intp]:
    """Equal-frequency bin (0 = lowest scores) of each row; tied scores always share a bin.

    A row's bin is floor(bins * (rank - 1) / n), with rank the lowest rank of its tie group, so
    the result depends neither on row order nor on how ties would be broken; heavy ties leave
    some bins empty.
    """
    rank = stats.rankdata(score, method="min").astype(np.intp)
    return ((rank - 1) * bins) // score.size


def _tie_averaged(values: FloatArray, score: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Values sorted by descending score, each tie group replaced by its mean, and the scores.

    The mean over a tie group is what any metric linear in the order gets on average over all
    ways of breaking the ties, so constant predictions score as a random order would.
    """
    order = np.argsort(-score, kind="stable")
    sorted_score = score[order]
    _, group, counts = np.unique(sorted_score, return_inverse=True, return_counts=True)
    means = np.bincount(group, weights=values[order]) / counts
    return means[group], sorted_score


def _top_sum(values: FloatArray, score: FloatArray, parts: int = TOP_PARTS) -> float:
    """Sum of values over the top ceil(n / parts) rows by score, ties at the cut shared pro rata."""
    k = -(-score.size // parts)
    averaged, _ = _tie_averaged(values, score)
    return float(averaged[:k].sum())


def _safe_ratio(numerator: float, denominator: float) -> float:
    """The quotient, or NaN where the denominator is 0."""
    return numerator / denominator if denominator != 0 else float("nan")


def calibration_table(y_true: ArrayLike, p: ArrayLike, bins: int = 10) -> pd.DataFrame:
    """Reliability table: observed churn rate against mean predicted probability per bin.

    Bins hold equal numbers of customers by predicted probability (ties share a bin, so with
    heavy ties some bins are absent).

    Args:
        y_true: Observed outcome, 0 or 1.
        p: Predicted probability of the outcome.
        bins: Number of equal-frequency bins.

    Returns:
        One row per non-empty bin, lowest probabilities first, with columns bin (1-based), n,
        p_mean, y_rate, p_min and p_max.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    y, prob = _binary(y_true, p)
    frame = pd.DataFrame({"bin": _rank_bins(prob, bins) + 1, "y": y, "p": prob})
    table = frame.groupby("bin", sort=True).agg(
        n=("y", "size"),
        p_mean=("p", "mean"),
        y_rate=("y", "mean"),
        p_min=("p", "min"),
        p_max=("p", "max"),
    )
    return table.reset_index()


def decile_table(y_true: ArrayLike, pred: ArrayLike) -> pd.DataFrame:
    """Predicted against actual totals per decile of the prediction, for lift and gain charts.

    Deciles hold equal numbers of customers by prediction, decile 1 the highest predictions
    (ties share a decile, so with heavy ties some deciles are absent).

    Args:
        y_true: Observed value per customer (e.g. spend over the horizon, or 0/1 churn).
        pred: Predicted value per customer.

    Returns:
        One row per non-empty decile with columns decile, n, pred_sum, actual_sum, pred_mean,
        actual_mean, actual_share (share of the total actual value) and cum_actual_share.
    """
    y, prediction = _pair(y_true, pred)
    frame = pd.DataFrame(
        {"decile": _rank_bins(-prediction, TOP_PARTS) + 1, "y": y, "pred": prediction}
    )
    table = (
        frame.groupby("decile", sort=True)
        .agg(
            n=("y", "size"),
            pred_sum=("pred", "sum"),
            actual_sum=("y", "sum"),
            pred_mean=("pred", "mean"),
            actual_mean=("y", "mean"),
        )
        .reset_index()
    )
    total = float(y.sum())
    # Shares of a zero total are undefined, not infinite.
    share = table["actual_sum"] / total if total != 0 else table["actual_sum"] * np.nan
    return table.assign(actual_share=share, cum_actual_share=share.cumsum())


def _ece(y: FloatArray, prob: FloatArray, bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (n_bin / n) |churn rate - mean p|."""
    table = calibration_table(y, prob, bins)
    gaps = (table["y_rate"] - table["p_mean"]).abs()
    return float((table["n"] * gaps).sum() / y.size)


def churn_metrics(y_true: ArrayLike, p: ArrayLike) -> dict[str, float]:
    """Discrimination, calibration and targeting metrics of churn probabilities.

    Definitions:
        roc_auc: Area under the ROC curve (NaN if only one class is present).
        pr_auc: Average precision (NaN without any churner).
        brier: Mean of (p - y)^2.
        log_loss: Mean of -[y log p + (1 - y) log(1 - p)], p clipped to [1e-15, 1 - 1e-15].
        top_decile_lift: Churn rate among the top ceil(n / 10) customers by p divided by the
            base rate (NaN without any churner).
        top_decile_capture: Share of all churners found in that top decile (NaN without any).
        ece: Expected calibration error over 10 equal-frequency bins of p.
        base_rate: Share of churners.

    Ties in p at the top-decile cut are shared pro rata, and tied p always share a calibration
    bin, so every metric is independent of row order; constant p gives a lift of exactly 1.

    Args:
        y_true: Observed churn, 0 or 1.
        p: Predicted churn probability.

    Returns:
        The metrics by name, as floats.
    """
    y, prob = _binary(y_true, p)
    positives = float(y.sum())
    both_classes = 0 < positives < y.size
    clipped = np.clip(prob, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    top = _top_sum(y, prob)
    k = -(-y.size // TOP_PARTS)
    base_rate = positives / y.size
    return {
        "roc_auc": float(roc_auc_score(y, prob)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, prob)) if positives > 0 else float("nan"),
        "brier": float(np.mean((prob - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log1p(-clipped))),
        "top_decile_lift": _safe_ratio(top / k, base_rate),
        "top_decile_capture": _safe_ratio(top, positives),
        "ece": _ece(y, prob),
        "base_rate": base_rate,
    }


def _gini(actual: FloatArray, score: FloatArray) -> float:
    """Gini of actual values ordered by descending score: mean gap of the gain curve over y = x."""
    averaged, _ = _tie_averaged(actual, score)
    n = actual.size
    gains = np.cumsum(averaged) / averaged.sum()
    return float(np.mean(gains - np.arange(1, n + 1) / n))


def spend_metrics(y_true: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """Ranking, error and aggregate metrics of spend (or CLV) predictions.

    Definitions:
        spearman: Spearman rank correlation (NaN if either side is constant).
        normalized_gini: Gini of the actuals ordered by prediction divided by the Gini of the
            actuals ordered by themselves (1 = perfect order, 0 = random; NaN if all actuals
            are equal or sum to 0).
        mae: Mean absolute error.
        rmse: Root mean squared error.
        top_decile_capture: Share of the total actual value in the top ceil(n / 10) customers
            by prediction (NaN if the actuals sum to 0).
        decile_mape: Customers in 10 equal-size bins by prediction; mean over bins of
            |sum pred - sum actual| / |sum actual|, skipping bins whose actuals sum to 0 (NaN if
            all are skipped).
        total_error: sum pred / sum actual - 1, signed (NaN if the actuals sum to 0).
        total_abs_error: |total_error|.

    Tied predictions are shared pro rata at the top-decile cut, averaged in the Gini and kept
    in one bin, so every metric is independent of row order.

    Args:
        y_true: Observed value per customer over the horizon.
        pred: Predicted value per customer.

    Returns:
        The metrics by name, as floats.
    """
    y, prediction = _pair(y_true, pred)
    total = float(y.sum())
    constant = np.ptp(y) == 0 or np.ptp(prediction) == 0
    spearman = float("nan") if constant else float(stats.spearmanr(y, prediction).statistic)
    perfect = _gini(y, y) if total != 0 else 0.0
    gini = _safe_ratio(_gini(y, prediction), perfect) if perfect != 0 else float("nan")
    deciles = decile_table(y, prediction)
    kept = deciles[deciles["actual_sum"] != 0]
    ape = (kept["pred_sum"] - kept["actual_sum"]).abs() / kept["actual_sum"].abs()
    total_error = _safe_ratio(float(prediction.sum()), total) - 1
    return {
        "spearman": spearman,
        "normalized_gini": gini,
        "mae": float(np.mean(np.abs(prediction - y))),
        "rmse": float(np.sqrt(np.mean((prediction - y) ** 2))),
        "top_decile_capture": _safe_ratio(_top_sum(y, prediction), total),
        "decile_mape": float(ape.mean()) if len(ape) else float("nan"),
        "total_error": total_error,
        "total_abs_error": abs(total_error),
    }


# The suffix of a metric over every customer; without it a metric is over the decision
# population (`features.population`: customers who bought within the churn window).
ALL_CUSTOMERS = "_all"


def population_metrics(
    metrics_of: Callable[[ArrayLike, ArrayLike], dict[str, float]],
    y_true: ArrayLike,
    pred: ArrayLike,
    active: ArrayLike,
    prefix: str,
) -> dict[str, float]:
    """Metrics over the decision population, with the all-customer figures beside them.

    Args:
        metrics_of: `churn_metrics` or `spend_metrics`.
        y_true: observed outcomes of every row.
        pred: predictions of every row.
        active: whether each row is in the decision population.
        prefix: the metric names' prefix, e.g. `churn_model`.

    Returns:
        `<prefix>_<metric>` over the active rows (NaN when there are none) and
        `<prefix>_<metric>_all` over every row.
    """
    y, prediction = _pair(y_true, pred)
    mask = np.asarray(active, dtype=bool).ravel()
    if mask.shape != y.shape:
        raise ValueError(f"the population mask has {mask.size} values for {y.size} rows")
    everyone = metrics_of(y, prediction)
    among_active = (
        metrics_of(y[mask], prediction[mask]) if mask.any() else dict.fromkeys(everyone, np.nan)
    )
    return {f"{prefix}_{k}": float(v) for k, v in among_active.items()} | {
        f"{prefix}_{k}{ALL_CUSTOMERS}": float(v) for k, v in everyone.items()
    }
