"""Trees that correct a BTYD base: its score per snapshot, its family, and how much to correct.

Each snapshot's base is fitted on that snapshot's customers alone (as of its cutoff, like its
features), so no row learns from a base that saw its future. How far the trees' correction is
trusted is chosen on the later validation snapshot: a correction weight of 0 is the BTYD model
itself, so on its proper score the model shipped is never worse there than that baseline.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import special
from sklearn.metrics import log_loss, mean_tweedie_deviance

from training.btyd.base import BtydBase

CHURN, SPEND = "churn", "spend"
# The spend models' loss: Tweedie deviance of this power (a point mass at zero, then skewed).
TWEEDIE_POWER = 1.5
# Correction weights tried, from the BTYD base alone (0) to the trees' full correction (1).
WEIGHTS = np.linspace(0.0, 1.0, 21)


def base_margin(base: BtydBase, target: str, frame: pd.DataFrame, days: float) -> np.ndarray:
    """The base's raw score of a target over `days`: log-odds of churn, or log spend."""
    if target == CHURN:
        return base.churn_margin(frame, days)
    return base.spend_margin(frame, days)


def to_prediction(target: str, margin: np.ndarray) -> np.ndarray:
    """A raw score as what is predicted: a churn probability, or expected spend."""
    return special.expit(margin) if target == CHURN else np.exp(margin)


def loss(target: str, actual: np.ndarray, predicted: np.ndarray) -> float:
    """The proper score a target is judged by: log loss, or Tweedie deviance."""
    if target == CHURN:
        return float(log_loss(actual, np.clip(predicted, 1e-6, 1 - 1e-6), labels=[0.0, 1.0]))
    return float(mean_tweedie_deviance(actual, np.maximum(predicted, 1e-9), power=TWEEDIE_POWER))


def snapshot_margins(frame: pd.DataFrame, family: str, target: str, days: float) -> np.ndarray:
    """Each row's base score, the base fitted on the rows of its own snapshot (`as_of`)."""
    out = np.empty(len(frame))
    for _, rows in frame.groupby("as_of", sort=True).indices.items():
        snapshot = frame.iloc[rows]
        out[rows] = base_margin(BtydBase.fit(snapshot, family), target, snapshot, days)
    return out


def snapshot_totals(
    frame: pd.DataFrame, margins: np.ndarray, actual: np.ndarray
) -> list[tuple[pd.Timestamp, float, float]]:
    """Per snapshot (`as_of`): its cutoff, the spend that followed and the base's total of it."""
    return [
        (pd.Timestamp(cutoff), float(actual[rows].sum()), float(np.exp(margins[rows]).sum()))
        for cutoff, rows in frame.groupby("as_of", sort=True).indices.items()
    ]


def level_shift(base: np.ndarray, corrected: np.ndarray) -> float:
    """The log shift that gives corrected spend the base's total over the same customers.

    Trees learn from younger snapshots and other seasons than the ones they score, and what
    they learn of the level does not carry (on CDNOW it moved the total 7-12% off where the
    base was 2-4% off); the base's time structure does. So the trees redistribute spend
    between customers and the base sets the total.
    """
    total = float(np.exp(corrected).sum())
    return float(np.log(np.exp(base).sum() / total)) if total > 0 else 0.0


def correction_weight(
    target: str,
    actual: np.ndarray,
    base: np.ndarray,
    trees: np.ndarray,
    keys: pd.Series,
    judged: np.ndarray,
) -> tuple[float, np.ndarray]:
    """How much of the trees' correction to keep, fitted on the later validation snapshot.

    Returns:
        The weight fitted on every judged row, and honest validation predictions: each half of
        the customers (by hash) predicted with the weight fitted on the other half.
    """
    fold = (pd.util.hash_pandas_object(keys, index=False).to_numpy() % 2).astype(bool)

    def best(rows: np.ndarray) -> float:
        scores: Callable[[float], float] = lambda w: loss(  # noqa: E731
            target, actual[rows], to_prediction(target, base[rows] + w * trees[rows])
        )
        return float(min(WEIGHTS, key=scores)) if rows.any() else 1.0

    weight = best(judged)
    honest = np.empty(len(actual))
    for held_out in (fold, ~fold):
        fitted = best(judged & ~held_out) if (judged & ~held_out).any() else weight
        honest[held_out] = to_prediction(target, base[held_out] + fitted * trees[held_out])
    return weight, honest
