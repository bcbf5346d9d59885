"""One target's model on its rung of the ladder: BTYD base, tuned trees, correction weight."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd

from training.btyd.base import BtydBase
from training.correction import (
    CHURN,
    correction_weight,
    snapshot_margins,
    snapshot_totals,
    to_prediction,
)
from training.datasets import BTYD_ONLY, CutoffPlan, FeatureSpec
from training.model import predict
from training.options import TrainOptions
from training.tuning import Split, tune_and_fit

log = logging.getLogger(__name__)

# The base is BG/NBD: Pareto/NBD's fit diverges on young snapshots (dropout unidentified, its
# parameters run off) and then takes minutes; it stays a baseline, fitted at later cutoffs.
BASE_FAMILY = "bgnbd"
LABELS = {CHURN: "churned", "spend": "future_spend"}
OBJECTIVES = {CHURN: "binary", "spend": "tweedie"}


@dataclass
class FittedTarget:
    """A target's trees, the base they correct (fitted as of the training date), and how."""

    target: str
    plan: CutoffPlan
    booster: lgb.Booster
    study: optuna.Study | None
    base: BtydBase
    # The constant log-odds the trees start from instead of the BTYD base (contractual churn:
    # a purchase process says nothing of a subscription's lapse); None: the BTYD base.
    constant: float | None
    family_losses: dict[str, float]
    weight: float
    honest: np.ndarray  # validation predictions, the weight cross-fitted by customer
    # per training and validation snapshot: cutoff, what followed, the base's total of it
    totals: list[tuple[pd.Timestamp, float, float]]

    def describe(self) -> dict[str, Any]:
        """The rung, windows, validation and base of this target, for the bundle and the run."""
        return {
            "rung": self.plan.rung,
            "label_days": self.plan.label_days,
            "validation": self.plan.validation,
            "btyd_family": self.base.family if self.constant is None else None,
            "base": "btyd" if self.constant is None else "constant log-odds",
            "correction_weight": self.weight,
            "training_cutoffs": [str(c.date()) for c in self.plan.train],
        }

    def metrics(self) -> dict[str, float]:
        """`<target>_label_days`, `..._correction_weight`, each family's base loss."""
        out = {
            f"{self.target}_label_days": float(self.plan.label_days),
            f"{self.target}_correction_weight": self.weight,
        }
        return out | {
            f"{self.target}_base_{family}_loss": value
            for family, value in self.family_losses.items()
        }


def fit_target(
    target: str,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    plan: CutoffPlan,
    spec: FeatureSpec,
    features: pd.DataFrame,
    options: TrainOptions,
    storage: str | None,
    study_name: str,
    judged: np.ndarray,
    constant_base: bool = False,
) -> FittedTarget:
    """Choose the base family, tune and fit the trees on it, and fit the correction weight.

    Args:
        target: "churn" or "spend".
        train: the training snapshots (labelled with `plan.label_days`).
        valid: the later validation snapshot (may be empty on the `btyd_only` rung).
        plan: the rung the history allowed.
        spec: the model's feature columns.
        features: every customer's features as of the training date: the base scoring uses
            is fitted on them.
        options: tuning budget, seed and threads.
        storage: where the Optuna study is kept, if anywhere.
        study_name: the study's name.
        judged: the validation rows that choose (the decision population).
        constant_base: start the trees from the training rows' log-odds, not a BTYD base.
    """
    label, days = LABELS[target], plan.label_days
    judged = judged if judged.any() else np.ones(len(valid), dtype=bool)
    family, losses = BASE_FAMILY, dict[str, float]()
    base = BtydBase.fit(features, family)
    constant = _log_odds(train[label] if len(train) else valid[label]) if constant_base else None

    def margins_of(frame: pd.DataFrame) -> np.ndarray:
        if constant is not None:
            return np.full(len(frame), constant)
        return snapshot_margins(frame, family, target, days)

    if plan.rung == BTYD_ONLY or train.empty or valid.empty:
        log.info("%s model: the %s base alone (%s)", target, family, plan.rung)
        margins = margins_of(valid) if len(valid) else np.zeros(0)
        totals = snapshot_totals(valid, margins, valid[label].to_numpy(dtype=float))
        return FittedTarget(
            target,
            plan,
            zero_booster(spec, features),
            None,
            base,
            constant,
            losses,
            0.0,
            to_prediction(target, margins),
            totals,
        )
    fold = {
        name: Split(
            spec.matrix(frame),
            frame[label].to_numpy(dtype=float),
            margins_of(frame),
        )
        for name, frame in (("train", train), ("valid", valid))
    }
    tuned = tune_and_fit(
        study_name, OBJECTIVES[target], fold["train"], fold["valid"], options, storage
    )
    study, booster = tuned.study, tuned.booster
    trees = predict(booster, fold["valid"].x, raw_score=True)
    base_valid = fold["valid"].base
    assert base_valid is not None
    weight, honest = correction_weight(
        target, fold["valid"].y, base_valid, trees, valid["customer_id"], judged
    )
    if target != CHURN:
        # Spend keeps its base's total (`level_shift`), on the validation snapshot as at T.
        honest = honest * np.exp(base_valid).sum() / max(float(honest.sum()), 1e-12)
    log.info(
        "%s model: trees on the %s base, %s-day labels (%s), correction weight %.2f",
        target,
        family if constant is None else "constant",
        days,
        plan.rung,
        weight,
    )
    totals = [
        total
        for name, frame in (("train", train), ("valid", valid))
        for total in snapshot_totals(frame, fold[name].base, fold[name].y)  # type: ignore[arg-type]
    ]
    return FittedTarget(
        target, plan, booster, study, base, constant, losses, weight, honest, totals
    )


def _log_odds(labels: pd.Series) -> float:
    """The log-odds of a binary label's rate, kept off 0 and 1."""
    rate = float(np.clip(labels.mean(), 1e-3, 1 - 1e-3))
    return float(np.log(rate / (1 - rate)))


def zero_booster(spec: FeatureSpec, features: pd.DataFrame) -> lgb.Booster:
    """A booster whose correction is 0 everywhere: the `btyd_only` rung's trees.

    One constant tree, so TreeSHAP, saving and loading work as for any booster.
    """
    matrix = spec.matrix(features.head(max(len(features), 1)))
    params = {
        "objective": "regression",
        "boost_from_average": False,
        "min_data_in_leaf": 1,
        "verbosity": -1,
        "num_threads": 1,
    }
    return lgb.train(params, lgb.Dataset(matrix, np.zeros(len(matrix))), num_boost_round=1)
