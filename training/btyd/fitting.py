"""Shared machinery of the BTYD models: input checks, the penalised likelihood fit, the base."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning, NotFittedError

FloatArray = NDArray[np.float64]
Objective = Callable[[FloatArray], tuple[float, FloatArray]]

# Log-parameters live in [-LOG_BOUND, LOG_BOUND] (time in units of the mean T): wide enough for
# any real data set, and a degenerate one (say, without repeat buyers) ends at an extreme but
# finite fit instead of running off to infinity.
LOG_BOUND = 25.0


def finite_floats(*values: ArrayLike) -> list[FloatArray]:
    """Broadcast inputs to float arrays of one shape; refuse NaN and infinities."""
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values))
    for array in arrays:
        if not np.all(np.isfinite(array)):
            raise ValueError("inputs must be finite numbers (found NaN or infinity)")
    return [np.array(a, dtype=np.float64) for a in arrays]


def checked_rfm(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> list[FloatArray]:
    """Validated frequency, recency and T arrays in the RFM summary convention."""
    x, t_x, age = finite_floats(frequency, recency, T)
    if np.any(x < 0):
        raise ValueError("frequency must be >= 0")
    if np.any(t_x < 0) or np.any(t_x > age * (1 + 1e-12)):
        raise ValueError("recency must satisfy 0 <= recency <= T")
    if np.any((x == 0) & (t_x != 0)):
        raise ValueError("recency must be 0 where frequency is 0")
    return [x, np.minimum(t_x, age), age]


def compress_rows(*columns: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Unique rows and their counts: customers sharing (x, t_x, T) share one likelihood term."""
    stacked = np.column_stack([c.ravel() for c in columns])
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, i].copy() for i in range(unique.shape[1])], counts.astype(np.float64)


def maximise_likelihood(
    objective: Objective, start: FloatArray, name: str
) -> optimize.OptimizeResult:
    """Minimise a penalised mean negative log-likelihood over log-parameters with L-BFGS-B."""
    result = optimize.minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LOG_BOUND, LOG_BOUND)] * len(start),
        options={"maxiter": 1000, "ftol": 1e-14, "gtol": 1e-9},
    )
    if not np.all(np.isfinite(result.x)) or not np.isfinite(result.fun):
        raise RuntimeError(f"{name} fit failed: {result.message}")
    # L-BFGS-B often stops with "ABNORMAL" line searches at the optimum when the objective is
    # flat to machine precision; only a sizeable gradient means the fit really did not converge.
    if not result.success and np.max(np.abs(result.jac)) > 1e-4:
        message = f"{name} fit may not have converged: {result.message}"
        warnings.warn(message, ConvergenceWarning, stacklevel=3)
    return result


# Weighted sums here and in the models use np.sum(w * v), not np.dot: BLAS threads fighting
# over busy cores make a dot product far slower than the plain reduction.


def numeric_gradient(
    loglik: Callable[[FloatArray], FloatArray], weights: FloatArray
) -> Callable[[FloatArray], tuple[float, FloatArray]]:
    """Mean negative log-likelihood over log-parameters with a central-difference gradient."""
    total = weights.sum()

    def value(log_params: FloatArray) -> float:
        ll = loglik(np.exp(log_params))
        out = -float(np.sum(weights * ll)) / total
        # A non-finite value would derail the line search; a huge one just makes it step back.
        return out if np.isfinite(out) else 1e100

    def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
        f = value(log_params)
        grad = np.empty_like(log_params)
        for i in range(len(log_params)):
            h = 1e-6 * max(1.0, abs(log_params[i]))
            step = np.zeros_like(log_params)
            step[i] = h
            grad[i] = (value(log_params + step) - value(log_params - step)) / (2 * h)
        return f, grad

    return objective


def with_penalty(objective: Objective, penalizer: float) -> Objective:
    """Add penalizer * sum(log_params**2) to an objective and its gradient."""

    def penalised(log_params: FloatArray) -> tuple[float, FloatArray]:
        f, g = objective(log_params)
        return (
            f + penalizer * float(np.sum(log_params**2)),
            g + 2 * penalizer * log_params,
        )

    return penalised


class FittedModel(BaseEstimator):
    """Base of the BTYD models: the penalizer setting, the fitted check and the parameter table."""

    _param_names: tuple[str, ...] = ()

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    def _check_fitted(self) -> tuple[float, ...]:
        names = [f"{n}_" for n in self._param_names]
        if not all(hasattr(self, n) for n in names):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit first")
        return tuple(float(getattr(self, n)) for n in names)

    @property
    def params_(self) -> dict[str, float]:
        """Fitted parameters by name."""
        return dict(zip(self._param_names, self._check_fitted(), strict=True))

    def _prepare(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> tuple[list[FloatArray], FloatArray, float]:
        """Checked inputs in units of the mean age, compressed to distinct rows with weights.

        Working in units of the mean age starts the rate parameters near 1 whatever the unit.
        """
        self._check_penalizer()
        x, t_x, age = checked_rfm(frequency, recency, T)
        if x.size == 0:
            raise ValueError("cannot fit on zero customers")
        scale = float(age.mean()) if age.mean() > 0 else 1.0
        columns, weights = compress_rows(x, t_x / scale, age / scale)
        return columns, weights, scale

    def _check_penalizer(self) -> None:
        if not self.penalizer >= 0:
            raise ValueError(f"penalizer must be >= 0, got {self.penalizer}")
