"""The buy-till-you-die base the trees correct: purchases and value, fitted as of one cutoff.

A BTYD model fitted on every customer's history before a cutoff carries what trees learn
badly from a few snapshots: the level of an ageing cohort and how purchases accumulate over
a window of any length. The LightGBM models start from its log-odds of a quiet window and its
log expected spend (`training.tuning.Split.base`) and learn the correction; a window longer
than any the history can label is reached by the base's own time structure
(`ModelBundle.predict_columns`).

Everything is computed from the feature table (`btyd.features.rfm_arrays`), so the base is
exactly as point-in-time as the features, in training and in scoring.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from features.columns import ColumnData, as_frame
from training.btyd.beta_geo import BetaGeo
from training.btyd.features import rfm_arrays
from training.btyd.fitting import FittedModel
from training.btyd.gamma_gamma import GammaGamma
from training.btyd.pareto_nbd import ParetoNBD

FAMILIES = {"bgnbd": BetaGeo, "pareto": ParetoNBD}
# Probabilities stay this far from 0 and 1 so their log-odds are finite.
EPS = 1e-6
# Expected spend below this (in currency units) is floored before its log is taken.
SPEND_FLOOR = 1e-3
# Midpoint quantiles of the posterior rates for the Pareto/NBD quiet-window probability.
QUADRATURE_POINTS = 16
QUADRATURE_CHUNK = 20_000


def purchase_value(features: pd.DataFrame) -> np.ndarray:
    """Each customer's mean spend per purchase day (0 without a purchase), never negative."""
    days = features["n_purchase_days"].fillna(0.0).to_numpy(float)
    spend = features["spend_total"].fillna(0.0).clip(lower=0.0).to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(days > 0, spend / days, 0.0)


def _process(family: str, params: dict[str, float]) -> FittedModel:
    model = FAMILIES[family]()
    for name, value in params.items():
        setattr(model, f"{name}_", value)
    return model


@dataclass
class BtydBase:
    """Fitted purchase process (BG/NBD or Pareto/NBD) and Gamma-Gamma value, JSON-ready."""

    family: str
    process: dict[str, float]
    value: dict[str, float] | None
    mean_value: float

    @classmethod
    def fit(cls, features: pd.DataFrame, family: str = "bgnbd") -> BtydBase:
        """Fit on one snapshot's customers (unsupervised: it reads no label)."""
        x, t_x, age = rfm_arrays(features)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            process = FAMILIES[family]().fit(x, t_x, age).params_
        m = purchase_value(features)
        usable = (x > 0) & (m > 0)
        value = None
        if usable.sum() >= 3 and np.ptp(m[usable]) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = GammaGamma().fit(x[usable], m[usable])
            value = fitted.params_ if fitted.q_ > 1 else None
        mean_value = float(m[m > 0].mean()) if (m > 0).any() else 0.0
        return cls(family, process, value, mean_value)

    def quiet(self, features: ColumnData, days: float) -> np.ndarray:
        """P(no purchase in the next `days`): dead, or alive and not buying."""
        x, t_x, age = rfm_arrays(as_frame(features))
        model = _process(self.family, self.process)
        alive = model.conditional_probability_alive(x, t_x, age)
        if self.family == "bgnbd":
            # BG/NBD customers die only at a purchase: alive now, quiet is the Poisson-Gamma tail.
            r, alpha = self.process["r"], self.process["alpha"]
            quiet_alive = ((alpha + age) / (alpha + age + days)) ** (r + x)
        else:
            quiet_alive = pareto_quiet_if_alive(self.process, x, age, days)
        return np.clip(1.0 - alive + alive * quiet_alive, EPS, 1.0 - EPS)

    def purchases(self, features: ColumnData, days: float) -> np.ndarray:
        """Expected purchase days in the next `days`."""
        x, t_x, age = rfm_arrays(as_frame(features))
        model = _process(self.family, self.process)
        expected = model.conditional_expected_purchases(days, x, t_x, age)
        return np.maximum(np.nan_to_num(expected, nan=0.0), 0.0)

    def expected_value(self, features: ColumnData) -> np.ndarray:
        """Expected value of a future purchase day (Gamma-Gamma, else the overall mean)."""
        frame = as_frame(features)
        x, _, _ = rfm_arrays(frame)
        m = purchase_value(frame)
        if self.value is None:
            return np.where(x > 0, m, self.mean_value)
        p, q, v = self.value["p"], self.value["q"], self.value["v"]
        own = np.where(x > 0, m, 0.0)
        return p * (v + x * own) / (p * x + q - 1.0)

    def spend(self, features: ColumnData, days: float) -> np.ndarray:
        """Expected spend in the next `days`: purchases x value."""
        return self.purchases(features, days) * self.expected_value(features)

    def churn_margin(self, features: ColumnData, days: float) -> np.ndarray:
        """Log-odds of a quiet window: the churn model's base score."""
        return special.logit(self.quiet(features, days))

    def spend_margin(self, features: ColumnData, days: float) -> np.ndarray:
        """Log expected spend: the spend model's base score (Tweedie's log link)."""
        return np.log(np.maximum(self.spend(features, days), SPEND_FLOOR))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, stored in the bundle's config."""
        return {
            "family": self.family,
            "process": self.process,
            "value": self.value,
            "mean_value": self.mean_value,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BtydBase:
        """The inverse of `to_dict`."""
        return cls(data["family"], dict(data["process"]), data["value"], data["mean_value"])


def pareto_quiet_if_alive(
    params: dict[str, float], x: np.ndarray, age: np.ndarray, days: float
) -> np.ndarray:
    """P(no purchase in `days` | alive now) under Pareto/NBD, by quadrature over the rates.

    Alive at T, the rates are independent: lambda ~ Gamma(r + x, alpha + T) and
    mu ~ Gamma(s, beta + T). A purchase comes before death in the window with probability
    lambda / (lambda + mu) (1 - exp(-(lambda + mu) t)); the mean over midpoint quantiles of
    both posteriors is its expectation. Rows go in chunks to bound memory.
    """
    u = (np.arange(QUADRATURE_POINTS) + 0.5) / QUADRATURE_POINTS
    mu_unit = stats.gamma.ppf(u, params["s"])
    out = np.empty(len(x))
    for start in range(0, len(x), QUADRATURE_CHUNK):
        rows = slice(start, start + QUADRATURE_CHUNK)
        shape = (params["r"] + x[rows])[:, None]
        lam = stats.gamma.ppf(u[None, :], shape) / (params["alpha"] + age[rows])[:, None]
        mu = mu_unit[None, :] / (params["beta"] + age[rows])[:, None]
        total = lam[:, :, None] + mu[:, None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            buys = np.where(total > 0, lam[:, :, None] / total * -np.expm1(-total * days), 0.0)
        out[rows] = 1.0 - buys.mean(axis=(1, 2))
    return out
