"""The model bundle: churn and spend boosters, out-of-time calibration, what scoring needs."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeAlias

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import special
from sklearn.isotonic import IsotonicRegression

from features.columns import ColumnData, as_frame, numbers, row_count
from features.population import subscriber_mask
from features.schema import ID
from training.btyd.base import BtydBase
from training.btyd.features import add_btyd_features
from training.datasets import FeatureSpec
from training.intervals import SpendIntervals

BUNDLE_FILE = "bundle.json"
REFERENCE_FILE = "reference.json"
# Orders of evidence before a customer's own margin rate outweighs the global one.
MARGIN_PRIOR_ORDERS = 3.0


# What the boosters read: the spec's matrix, or its float array (`ModelBundle.model_input`).
ModelInput: TypeAlias = pd.DataFrame | np.ndarray


def predict(
    booster: lgb.Booster, matrix: ModelInput, num_threads: int = 0, **kwargs: Any
) -> np.ndarray:
    """A booster's predictions as a float array (LightGBM's own return type is a union).

    LightGBM refuses an empty matrix; no customers is a legitimate input and gets no rows.
    """
    if len(matrix) == 0:
        width = booster.num_feature() + 1 if kwargs.get("pred_contrib") else None
        return np.zeros((0, width) if width else 0)
    return np.asarray(booster.predict(matrix, num_threads=num_threads, **kwargs), dtype=float)


@dataclass
class Calibrator:
    """A monotone map from raw model output to calibrated output, fitted out of time."""

    x: list[float]
    y: list[float]

    @classmethod
    def fit(
        cls, raw: np.ndarray, target: np.ndarray, *, bounds: tuple[float, float] | None = None
    ) -> Calibrator:
        """Centred isotonic regression of `target` on `raw`.

        Plain isotonic regression is a step function: whole blocks of customers share one
        score and rankings tie. Joining the blocks' centres with straight lines keeps the
        calibration and keeps distinct raw scores distinct.
        """
        lower, upper = bounds if bounds is not None else (None, None)
        x = np.asarray(raw, dtype=float)
        iso = IsotonicRegression(out_of_bounds="clip", y_min=lower, y_max=upper)
        fitted = iso.fit_transform(x, np.asarray(target, dtype=float))
        levels, block = np.unique(fitted, return_inverse=True)
        centres = np.bincount(block, weights=x) / np.bincount(block)
        if len(levels) == 1:
            return cls(x=[float(x.min()), float(x.max())], y=[float(levels[0])] * 2)
        return cls(x=centres.tolist(), y=levels.tolist())

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Map raw outputs (clipped to the fitted range)."""
        return np.interp(np.asarray(raw, dtype=float), self.x, self.y)


# The calibrator of models whose level the BTYD base carries: the identity.
IDENTITY = Calibrator([0.0, 1.0], [0.0, 1.0])


def discount_factor(annual_rate: float, horizon_days: int) -> float:
    """Mean present value of one unit spent evenly over the horizon at an annual discount rate."""
    if annual_rate <= 0:
        return 1.0
    years = horizon_days / 365.25
    log_rate = math.log1p(annual_rate)
    return (1.0 - math.exp(-log_rate * years)) / (log_rate * years)


@dataclass
class SpendModel:
    """Spend over the horizon: Tweedie regression, or purchase probability x spend if buying."""

    kind: str  # "tweedie" or "hurdle"
    boosters: dict[str, lgb.Booster]
    calibrator: Calibrator

    def raw(self, matrix: ModelInput, num_threads: int = 0) -> np.ndarray:
        """Uncalibrated expected spend."""
        if self.kind == "tweedie":
            return predict(self.boosters["spend"], matrix, num_threads)
        buy = predict(self.boosters["buy"], matrix, num_threads)
        amount = predict(self.boosters["amount"], matrix, num_threads)
        return buy * np.maximum(amount, 0.0)

    def predict(self, matrix: ModelInput, num_threads: int = 0) -> np.ndarray:
        """Calibrated expected spend, never negative."""
        return np.maximum(self.calibrator(self.raw(matrix, num_threads)), 0.0)


@dataclass(frozen=True)
class Prediction:
    """What the bundle predicts for some customers, with the inputs the reasons need."""

    churn_probability: np.ndarray
    predicted_spend: np.ndarray
    clv: np.ndarray
    model_frame: ColumnData  # the features plus what the models derive (`model_features`)
    matrix: ModelInput  # what the boosters read (`model_input`)
    # The ranges (`training.intervals`, level in `config["spend_intervals"]`); NaN for a
    # bundle fitted before they existed.
    spend_low: np.ndarray
    spend_high: np.ndarray
    clv_low: np.ndarray
    clv_high: np.ndarray


@dataclass
class ModelBundle:
    """Everything scoring needs, saved and registered as one unit so it swaps atomically."""

    spec: FeatureSpec
    churn: lgb.Booster
    churn_calibrator: Calibrator
    spend: SpendModel
    config: dict[str, Any] = field(default_factory=dict)
    # Histograms of the features and scores the model was trained for (training.reference):
    # what nightly scoring measures drift against. None for bundles saved before it existed.
    reference: dict[str, Any] | None = None

    def churn_raw(self, matrix: ModelInput, num_threads: int = 0) -> np.ndarray:
        """Uncalibrated churn probability."""
        return predict(self.churn, matrix, num_threads)

    def predict_columns(
        self, features: ColumnData, n: int | None = None, num_threads: int = 0
    ) -> Prediction:
        """The one churn/spend/CLV formula, for a feature frame or a dict of feature columns.

        CLV is the predicted spend times the customer's margin rate (their own history shrunk
        towards the overall rate), discounted over the horizon; never negative. The spend
        range is `config["spend_intervals"]` (`training.intervals.SpendIntervals`), the CLV
        range the spend range through the same formula; NaN when the bundle has none.
        """
        n = row_count(features, n)
        frame = self.model_features(features)
        matrix = self.model_input(frame, n)
        churn, spend = self.churn_and_spend(frame, matrix, num_threads)
        discount = float(self.config.get("discount_factor", 1.0))
        value_per_spend = self.margin_rates(features, n) * discount
        clv = np.maximum(spend * value_per_spend, 0.0)
        stored = self.config.get("spend_intervals")
        if stored:
            spend_low, spend_high = SpendIntervals.from_dict(stored).bounds(spend)
        else:
            spend_low, spend_high = np.full(n, np.nan), np.full(n, np.nan)
        return Prediction(
            churn_probability=churn,
            predicted_spend=spend,
            clv=clv,
            model_frame=frame,
            matrix=matrix,
            spend_low=spend_low,
            spend_high=spend_high,
            clv_low=np.maximum(spend_low * value_per_spend, 0.0),
            clv_high=np.maximum(spend_high * value_per_spend, 0.0),
        )

    def churn_and_spend(
        self, frame: ColumnData, matrix: ModelInput, num_threads: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Churn probability over the churn window and expected spend over the horizon.

        With a BTYD base (`training.btyd.base`), each is the base's score for the requested
        window plus the trees' correction, shrunk by the weight fitted out of time: the base
        carries the level and the time structure, so a window longer than the trees were
        labelled with is still forecast. Older bundles: the boosters, calibrated.
        """
        bases = self.btyd_bases
        if bases is None:
            churn = np.clip(self.churn_calibrator(self.churn_raw(matrix, num_threads)), 0.0, 1.0)
            return churn, self.spend.predict(matrix, num_threads)
        weight = self.config["correction_weight"]
        window, horizon = self.config["churn_window_days"], self.config["horizon_days"]
        churn_margin = self._churn_base(frame, window, matrix.shape[0]) + weight["churn"] * predict(
            self.churn, matrix, num_threads, raw_score=True
        )
        spend_margin = bases["spend"].spend_margin(frame, horizon) + weight["spend"] * predict(
            self.spend.boosters["spend"], matrix, num_threads, raw_score=True
        )
        level = float(self.config.get("spend_level_shift", 0.0))
        churn = special.expit(churn_margin)
        if self.churn_definition == "contractual":
            # Without a term at T the subscription has already lapsed.
            churn = np.where(subscriber_mask(frame, len(churn)), churn, 1.0)
        return churn, np.exp(spend_margin + level)

    def _churn_base(self, frame: ColumnData, window: int, n: int) -> np.ndarray:
        """What the churn trees start from: the BTYD base's log-odds, or a constant's."""
        constant = self.config.get("churn_base_logit")
        if constant is not None:
            return np.full(n, float(constant))
        bases = self.btyd_bases
        assert bases is not None
        return bases["churn"].churn_margin(frame, window)

    def churn_base_shift(self, frame: ColumnData, n: int | None = None) -> np.ndarray | None:
        """Each row's BTYD churn log-odds minus their mean at the training date (None: no base).

        What the base adds to a customer's churn score beyond the average customer's: the part
        of the score the trees' TreeSHAP values do not hold.
        """
        bases = self.btyd_bases
        if bases is None or self.config.get("churn_base_logit") is not None:
            return None
        margin = bases["churn"].churn_margin(frame, self.config["churn_window_days"])
        return margin - float(self.config.get("churn_base_mean", 0.0))

    @property
    def churn_definition(self) -> str:
        """What churn means for this model (`features.labels.CHURN_DEFINITIONS`)."""
        return str(self.config.get("churn_definition", "inactivity"))

    @cached_property
    def btyd_bases(self) -> dict[str, BtydBase] | None:
        """The BTYD base of each target, fitted as of the training date (None: older bundles)."""
        stored = self.config.get("btyd_base")
        return {k: BtydBase.from_dict(v) for k, v in stored.items()} if stored else None

    def predict(self, features: pd.DataFrame, num_threads: int = 0) -> pd.DataFrame:
        """`predict_columns` as a frame of feature rows (as `build_features` gives them)."""
        predicted = self.predict_columns(features, len(features), num_threads)
        return pd.DataFrame(
            {
                ID: features[ID].to_numpy(),
                "churn_probability": predicted.churn_probability,
                "predicted_spend": predicted.predicted_spend,
                "clv": predicted.clv,
                "spend_low": predicted.spend_low,
                "spend_high": predicted.spend_high,
                "clv_low": predicted.clv_low,
                "clv_high": predicted.clv_high,
            },
            index=features.index,
        )

    def model_features(self, features: ColumnData) -> ColumnData:
        """The feature table plus what the models derive themselves (BG/NBD outputs, if used)."""
        params = self.config.get("btyd_params")
        if not params:
            return features
        window, horizon = self.config["churn_window_days"], self.config["horizon_days"]
        return add_btyd_features(as_frame(features), params, window, horizon)

    def model_input(self, frame: ColumnData, n: int | None = None) -> ModelInput:
        """What the boosters read for rows of `model_features`: `spec.matrix`, or its array.

        The array (`FeatureSpec.array`) holds the very numbers LightGBM makes of the matrix
        when every booster was trained on the spec's category levels, so predictions are
        the same to the bit; it spares the pandas conversion LightGBM repeats on every
        predict call (milliseconds for one row). Boosters trained otherwise get the matrix.
        """
        if self._reads_spec_levels:
            return self.spec.array(frame, n)
        return self.spec.matrix(as_frame(frame))

    @cached_property
    def _reads_spec_levels(self) -> bool:
        """Whether every booster encodes categoricals with the spec's levels, in column order."""
        spec = self.spec
        levels = [spec.categories[c] for c in spec.columns if c in spec.categories]
        boosters = [self.churn, *self.spend.boosters.values()]
        return all((booster.pandas_categorical or []) == levels for booster in boosters)

    def margin_rates(self, features: ColumnData, n: int | None = None) -> np.ndarray:
        """Per-customer margin per unit of revenue, shrunk towards the overall rate."""
        n = row_count(features, n)
        overall = float(self.config["margin_rate"])
        if "margin_total" not in features:
            return np.full(n, overall)
        spend = numbers(features, "spend_total", n)
        orders = numbers(features, "n_orders", n)
        orders = np.where(np.isnan(orders), 0.0, orders)
        with np.errstate(divide="ignore", invalid="ignore"):
            own = np.clip(numbers(features, "margin_total", n) / spend, -1.0, 1.0)
        own = np.where(np.isfinite(own), own, overall)
        return (orders * own + MARGIN_PRIOR_ORDERS * overall) / (orders + MARGIN_PRIOR_ORDERS)

    def save(self, folder: Path) -> Path:
        """Write the bundle as plain files (LightGBM text models and JSON)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.churn.save_model(folder / "churn.txt")
        for name, booster in self.spend.boosters.items():
            booster.save_model(folder / f"spend_{name}.txt")
        meta = {
            "spec": self.spec.to_dict(),
            "churn_calibrator": self.churn_calibrator.__dict__,
            "spend": {
                "kind": self.spend.kind,
                "boosters": sorted(self.spend.boosters),
                "calibrator": self.spend.calibrator.__dict__,
            },
            "config": self.config,
        }
        (folder / BUNDLE_FILE).write_text(json.dumps(meta, indent=1, default=str))
        if self.reference is not None:
            (folder / REFERENCE_FILE).write_text(json.dumps(self.reference))
        return folder

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        """Read a bundle written by `save`."""
        folder = Path(folder)
        meta = json.loads((folder / BUNDLE_FILE).read_text())
        spend_meta = meta["spend"]
        boosters = {
            name: lgb.Booster(model_file=str(folder / f"spend_{name}.txt"))
            for name in spend_meta["boosters"]
        }
        return cls(
            spec=FeatureSpec.from_dict(meta["spec"]),
            churn=lgb.Booster(model_file=str(folder / "churn.txt")),
            churn_calibrator=Calibrator(**meta["churn_calibrator"]),
            spend=SpendModel(spend_meta["kind"], boosters, Calibrator(**spend_meta["calibrator"])),
            config=meta["config"],
            reference=(
                json.loads((folder / REFERENCE_FILE).read_text())
                if (folder / REFERENCE_FILE).exists()
                else None
            ),
        )
