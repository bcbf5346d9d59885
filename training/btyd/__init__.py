"""Buy-till-you-die baselines (BG/NBD, Pareto/NBD, Gamma-Gamma) fitted by maximum likelihood."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import integrate, optimize, special, stats
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning, NotFittedError

FloatArray = NDArray[np.float64]
Objective = Callable[[FloatArray], tuple[float, FloatArray]]

RFM_COLUMNS = ("frequency", "recency", "T", "monetary_value")
PREDICTION_COLUMNS = ("p_alive", "expected_purchases", "expected_spend")

# Log-parameters live in [-LOG_BOUND, LOG_BOUND] (time in units of the mean T): wide enough for
# any real data set, and a degenerate one (say, without repeat buyers) ends at an extreme but
# finite fit instead of running off to infinity.
LOG_BOUND = 25.0
# Keeps a model whose a (BG/NBD) sits exactly on the removable singularity at 1 away from 0/0.
SINGULAR_EPS = 1e-7


def _floats(*values: ArrayLike) -> list[FloatArray]:
    """Broadcast inputs to float arrays of one shape; refuse NaN and infinities."""
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values))
    for array in arrays:
        if not np.all(np.isfinite(array)):
            raise ValueError("inputs must be finite numbers (found NaN or infinity)")
    return [np.array(a, dtype=np.float64) for a in arrays]


def _rfm(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> list[FloatArray]:
    """Validated frequency, recency and T arrays in the RFM summary convention."""
    x, t_x, age = _floats(frequency, recency, T)
    if np.any(x < 0):
        raise ValueError("frequency must be >= 0")
    if np.any(t_x < 0) or np.any(t_x > age * (1 + 1e-12)):
        raise ValueError("recency must satisfy 0 <= recency <= T")
    if np.any((x == 0) & (t_x != 0)):
        raise ValueError("recency must be 0 where frequency is 0")
    return [x, np.minimum(t_x, age), age]


def _compress(*columns: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Unique rows and their counts: customers sharing (x, t_x, T) share one likelihood term."""
    stacked = np.column_stack([c.ravel() for c in columns])
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, i].copy() for i in range(unique.shape[1])], counts.astype(np.float64)


def _maximise(objective: Objective, start: FloatArray, name: str) -> optimize.OptimizeResult:
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


# Weighted sums use np.sum(w * v), not np.dot: BLAS threads fighting over two busy cores made
# a 60k-element dot product 100 times slower than the plain reduction.


def _numeric_gradient(
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


def _with_penalty(objective: Objective, penalizer: float) -> Objective:
    """Add penalizer * sum(log_params**2) to an objective and its gradient."""

    def penalised(log_params: FloatArray) -> tuple[float, FloatArray]:
        f, g = objective(log_params)
        return (
            f + penalizer * float(np.sum(log_params**2)),
            g + 2 * penalizer * log_params,
        )

    return penalised


class _Fitted(BaseEstimator):
    """Shared plumbing: settings, the fitted check and the parameter table."""

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
        x, t_x, age = _rfm(frequency, recency, T)
        if x.size == 0:
            raise ValueError("cannot fit on zero customers")
        scale = float(age.mean()) if age.mean() > 0 else 1.0
        columns, weights = _compress(x, t_x / scale, age / scale)
        return columns, weights, scale

    def _check_penalizer(self) -> None:
        if not self.penalizer >= 0:
            raise ValueError(f"penalizer must be >= 0, got {self.penalizer}")


class BetaGeo(_Fitted):
    """BG/NBD model of repeat purchasing (Fader, Hardie and Lee 2005).

    While alive a customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha); after
    each repeat purchase they drop out for good with probability p ~ Beta(a, b).

    Args:
        penalizer: L2 penalty on the log-parameters (time measured in units of the mean T),
            added to the mean negative log-likelihood; 0 gives the maximum-likelihood fit.

    Attributes:
        r_: Shape of the purchase-rate Gamma distribution.
        alpha_: Scale of the purchase-rate Gamma distribution, in the time unit of the data.
        a_: First shape of the dropout Beta distribution.
        b_: Second shape of the dropout Beta distribution.
        log_likelihood_: Total log-likelihood of the training data at the fitted parameters.
        n_iter_: Optimiser iterations used.
    """

    _param_names = ("r", "alpha", "a", "b")

    @staticmethod
    def _loglik_and_grad(
        params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Per-customer log-likelihood and its gradient with respect to (r, alpha, a, b)."""
        r, alpha, a, b = params
        repeat = x > 0
        bx1 = np.where(repeat, b + x - 1, 1.0)
        a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        a2 = (
            special.gammaln(a + b)
            + special.gammaln(b + x)
            - special.gammaln(b)
            - special.gammaln(a + b + x)
        )
        a3 = -(r + x) * np.log(alpha + T)
        a4 = np.where(repeat, np.log(a) - np.log(bx1) - (r + x) * np.log(alpha + t_x), -np.inf)
        # Sum of the "alive at T" and "dropped out after t_x" terms, done in logs: both
        # underflow for heavy buyers.
        log_sum = np.logaddexp(a3, a4)
        w4 = np.exp(a4 - log_sum)
        w3 = 1.0 - w4
        digamma_ab = special.digamma(a + b) - special.digamma(a + b + x)
        grad = np.stack(
            [
                special.digamma(r + x)
                - special.digamma(r)
                + np.log(alpha)
                - w3 * np.log(alpha + T)
                - w4 * np.log(alpha + t_x),
                r / alpha - (r + x) * (w3 / (alpha + T) + w4 / (alpha + t_x)),
                digamma_ab + w4 / a,
                digamma_ab + special.digamma(b + x) - special.digamma(b) - w4 / bx1,
            ]
        )
        return a1 + a2 + log_sum, grad

    def fit(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> BetaGeo:
        """Fit by maximum likelihood.

        Args:
            frequency: Repeat purchase days per customer (distinct purchase days - 1).
            recency: Time from first to last purchase.
            T: Time from first purchase to the cutoff.

        Returns:
            The fitted model.
        """
        (ux, ut_x, uT), w, scale = self._prepare(frequency, recency, T)
        total = w.sum()

        def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
            params = np.exp(log_params)
            ll, grad = self._loglik_and_grad(params, ux, ut_x, uT)
            f = -float(np.sum(w * ll)) / total
            g = -np.sum(grad * w, axis=1) / total * params
            if not np.isfinite(f) or not np.all(np.isfinite(g)):
                return 1e100, np.zeros_like(log_params)
            return f, g

        result = _maximise(_with_penalty(objective, self.penalizer), np.zeros(4), "BG/NBD")
        r, alpha, a, b = np.exp(result.x)
        self.r_, self.alpha_, self.a_, self.b_ = float(r), float(alpha * scale), float(a), float(b)
        # Back to the data's time unit: each repeat purchase time is a density in 1/time.
        ll, _ = self._loglik_and_grad(np.array([r, alpha, a, b]), ux, ut_x, uT)
        self.log_likelihood_ = float(np.sum(w * ll) - np.sum(w * ux) * np.log(scale))
        self.n_iter_ = int(result.nit)
        return self

    def log_likelihood(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        """Per-customer log-likelihood at the fitted parameters.

        Args:
            frequency: Repeat purchase days per customer.
            recency: Time from first to last purchase.
            T: Time from first purchase to the cutoff.

        Returns:
            Log-likelihood of each customer's (frequency, recency, T).
        """
        params = np.array(self._check_fitted())
        x, t_x, age = _rfm(frequency, recency, T)
        return self._loglik_and_grad(params, x, t_x, age)[0]

    def conditional_probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(alive at T | frequency, recency, T).

        Equal to 1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x)), so a
        customer without repeat purchases is alive for sure (BG/NBD drops out only after a
        repeat purchase).

        Args:
            frequency: Repeat purchase days per customer.
            recency: Time from first to last purchase.
            T: Time from first purchase to the cutoff.

        Returns:
            Probability that each customer is still alive at T.
        """
        r, alpha, a, b = self._check_fitted()
        x, t_x, age = _rfm(frequency, recency, T)
        return self._p_alive(r, alpha, a, b, x, t_x, age)

    @staticmethod
    def _p_alive(
        r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> FloatArray:
        repeat = x > 0
        bx1 = np.where(repeat, b + x - 1, 1.0)
        log_odds_dead = (
            np.log(a) - np.log(bx1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        )
        # expit of the log-odds instead of 1 / (1 + ratio): the ratio overflows for heavy buyers
        # who went quiet.
        return np.where(repeat, special.expit(-log_odds_dead), 1.0)

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """Expected repeat purchases in (T, T + t] given the customer's history.

        E[Y(t) | x, t_x, T] = (a + b + x - 1) / (a - 1)
        * [1 - ((alpha + T) / (alpha + T + t))^(r + x) 2F1(r + x, b + x; a + b + x - 1; z)]
        * P(alive), with z = t / (alpha + T + t).

        Args:
            t: Length of the prediction horizon, in the time unit of the data.
            frequency: Repeat purchase days per customer.
            recency: Time from first to last purchase.
            T: Time from first purchase to the cutoff.

        Returns:
            Expected number of purchases in the horizon.
        """
        r, alpha, a, b = self._check_fitted()
        horizon, x, t_x, age = _floats(t, frequency, recency, T)
        if np.any(horizon < 0):
            raise ValueError("t must be >= 0")
        x, t_x, age = _rfm(x, t_x, age)
        expected = _bg_expected_if_alive(r, a, b, x, horizon / (alpha + age))
        return expected * self._p_alive(r, alpha, a, b, x, t_x, age)

    def expected_purchases(self, t: ArrayLike) -> FloatArray:
        """Expected repeat purchases in (0, t] for a customer who has just made a first purchase.

        E[X(t)] = (a + b - 1) / (a - 1) [1 - (alpha / (alpha + t))^r 2F1(r, b; a + b - 1; z)],
        with z = t / (alpha + t).

        Args:
            t: Time since the first purchase.

        Returns:
            Expected number of repeat purchases.
        """
        r, alpha, a, b = self._check_fitted()
        (horizon,) = _floats(t)
        return _bg_expected_if_alive(r, a, b, np.zeros_like(horizon), horizon / alpha)


def _bg_expected_if_alive(r: float, a: float, b: float, x: FloatArray, u: FloatArray) -> FloatArray:
    """BG/NBD expected purchases over a horizon for a customer alive now, after x repeats.

    Equal to (a + b + x - 1) / (a - 1) [1 - G] with G = (1 + u)^-(r + x) 2F1(r + x, b + x;
    a + b + x - 1; z), z = u / (1 + u), and u the horizon over alpha + T. Euler's transformation
    gives the same G as (1 + u)^-(a - 1) 2F1(a - 1, a + b - 1 - r; a + b + x - 1; z): bounded for
    heavy buyers (large x), where the original 2F1 overflows, while the original stays bounded
    for large a, where the transformed one overflows. Rows where neither gives a value within
    the bounds [0, (r + x) u] of an expectation (scipy's hyp2f1 also fails when c - a - b is an
    integer, i.e. r - a is, and z > 0.9) are summed as a series of positive terms instead. G is
    combined as a product, not in logs: the 2F1 can be negative when a + b + x < 1.
    """
    x_full, u_full = np.broadcast_arrays(x, u)
    x, u = x_full.ravel().astype(np.float64), u_full.ravel().astype(np.float64)
    a = _off_one(a)
    c = a + b + x - 1
    z = u / (1 + u)
    log_q = -np.log1p(u)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        euler = np.exp((a - 1) * log_q) * special.hyp2f1(a - 1, a + b - 1 - r, c, z)
        original = np.exp((r + x) * log_q) * special.hyp2f1(r + x, b + x, c, z)
        expected = c / (a - 1) * (1 - np.where(np.isfinite(euler), euler, original))
    bound = (r + x) * u
    bad = ~(np.isfinite(expected) & (expected >= 0) & (expected <= bound * (1 + 1e-9) + 1e-300))
    for i in np.flatnonzero(bad):
        expected[i] = _bg_expected_series(r, a, b, x[i], u[i])
    return expected.reshape(u_full.shape)


def _bg_expected_series(r: float, a: float, b: float, x: float, u: float) -> float:
    """The same expectation as sum over j >= 1 of E[(1 - p)^(j - 1)] P(N >= j).

    The j-th future purchase counts if the customer survived the j - 1 before it (p ~ Beta(a,
    b + x) given the history) and the horizon holds at least j purchases (N negative binomial,
    from lambda ~ Gamma(r + x, alpha + T)). Every term is positive, so nothing cancels; it is
    slow when many purchases are expected, hence only a fallback.
    """
    k, q = r + x, 1 / (1 + u)
    log_norm = special.betaln(a, b + x)
    total, start, chunk = 0.0, 1, 4096
    while start < 50_000_000:
        j = np.arange(start, start + chunk, dtype=np.float64)
        survive = np.exp(special.betaln(a, b + x + j - 1) - log_norm)
        terms = survive * stats.nbinom.sf(j - 1, k, q)
        total += float(terms.sum())
        if terms[-1] <= 1e-17 * total:
            break
        start, chunk = start + chunk, min(2 * chunk, 1 << 20)
    return total


def _off_one(a: float) -> float:
    """Move a shape parameter off 1, where (a - 1) cancels between numerator and denominator."""
    if abs(a - 1) < SINGULAR_EPS:
        return 1 + SINGULAR_EPS if a >= 1 else 1 - SINGULAR_EPS
    return a


class _Ends(NamedTuple):
    """Distinct (x, t_x) and (x, T) pairs, and the pair of each row.

    The Pareto/NBD A0 term is a difference of two hypergeometric functions, one at t_x and one
    at T; evaluating each only once per distinct pair cuts the cost of a fit several-fold (all
    customers without repeats share t_x = 0, and daily data repeat T values).
    """

    x_start: FloatArray
    u_start: FloatArray
    row_start: NDArray[np.intp]
    x_end: FloatArray
    u_end: FloatArray
    row_end: NDArray[np.intp]
    shape: tuple[int, ...]

    @classmethod
    def of(cls, x: FloatArray, t_x: FloatArray, T: FloatArray) -> _Ends:
        """Group rows by (x, t_x) and by (x, T)."""
        x, t_x, T = np.broadcast_arrays(x, t_x, T)
        pairs = (np.column_stack([x.ravel(), t_x.ravel()]), np.column_stack([x.ravel(), T.ravel()]))
        start, row_start = np.unique(pairs[0], axis=0, return_inverse=True)
        end, row_end = np.unique(pairs[1], axis=0, return_inverse=True)
        return cls(
            start[:, 0],
            start[:, 1],
            row_start.ravel(),
            end[:, 0],
            end[:, 1],
            row_end.ravel(),
            x.shape,
        )


def _pareto_log_tail(r: float, alpha: float, s: float, beta: float, x: float, u: float) -> float:
    """F(u) = (r+s+x) * integral over (u, inf) of (alpha+v)^-(r+x) (beta+v)^-(s+1) dv, in logs.

    The A0 term is F(t_x) - F(T); this quadrature backs up the closed form where it fails. The
    integrand is scaled by its value at u so that it starts at 1 whatever the magnitudes.
    """

    def scaled(w: float) -> float:
        return float(
            np.exp(-(r + x) * np.log1p(w / (alpha + u)) - (s + 1) * np.log1p(w / (beta + u)))
        )

    integral, _ = integrate.quad(scaled, 0, np.inf, epsabs=0, epsrel=1e-12, limit=200)
    log_scale = -(r + x) * np.log(alpha + u) - (s + 1) * np.log(beta + u)
    return float(np.log(r + s + x) + log_scale + np.log(integral))


class ParetoNBD(_Fitted):
    """Pareto/NBD model of repeat purchasing (Schmittlein, Morrison and Colombo 1987).

    While alive a customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha); the
    lifetime is exponential with rate mu ~ Gamma(s, beta). The likelihood follows Fader and
    Hardie (2005), "A note on deriving the Pareto/NBD model and related expressions".

    Args:
        penalizer: L2 penalty on the log-parameters (time measured in units of the mean T),
            added to the mean negative log-likelihood; 0 gives the maximum-likelihood fit.

    Attributes:
        r_: Shape of the purchase-rate Gamma distribution.
        alpha_: Scale of the purchase-rate Gamma distribution, in the time unit of the data.
        s_: Shape of the dropout-rate Gamma distribution.
        beta_: Scale of the dropout-rate Gamma distribution, in the time unit of the data.
        log_likelihood_: Total log-likelihood of the training data at the fitted parameters.
        n_iter_: Optimiser iterations used.
    """

    _param_names = ("r", "alpha", "s", "beta")

    @staticmethod
    def _log_a0(params: FloatArray, ends: _Ends) -> FloatArray:
        """The log of A0 = (r+s+x) * integral over (t_x, T) of (alpha+u)^-(r+x) (beta+u)^-(s+1) du.

        The closed form is F(t_x) - F(T) with F(u) = 2F1(r+s+x, c; r+s+x+1; z) / (m+u)^(r+s+x),
        z = |alpha-beta| / (m+u), m = max(alpha, beta), c = s + 1 if alpha >= beta else r + x.
        Euler's transformation turns it into ((k+u) / (m+u))^(1-c) 2F1(1, r+s+x+1-c; r+s+x+1;
        z) / (m+u)^(r+s+x) with k = min(alpha, beta): a series of positive terms that stays
        finite as z -> 1, where the original overflows for heavy buyers.
        """
        r, alpha, s, beta = params
        high, low = max(alpha, beta), min(alpha, beta)

        def log_f(x: FloatArray, u: FloatArray) -> FloatArray:
            rsx = r + s + x
            c = s + 1 if alpha >= beta else r + x
            q = high + u
            with np.errstate(invalid="ignore", divide="ignore"):
                hyp = special.hyp2f1(1.0, rsx + 1 - c, rsx + 1, (high - low) / q)
                out = (1 - c) * (np.log(low + u) - np.log(q)) + np.log(hyp) - rsx * np.log(q)
            # scipy's hyp2f1 gives NaN for a large second parameter (heavy buyers) near z = 1.
            for i in np.flatnonzero(~np.isfinite(out)):
                out[i] = _pareto_log_tail(r, alpha, s, beta, x[i], u[i])
            return out

        log_f1 = log_f(ends.x_start, ends.u_start)[ends.row_start]
        log_f2 = log_f(ends.x_end, ends.u_end)[ends.row_end]
        # log(F1 - F2) with F1 >= F2; rounding can flip the sign when t_x == T, where A0 is 0.
        gap = np.minimum(log_f2 - log_f1, 0.0)
        with np.errstate(divide="ignore"):
            return (log_f1 + np.log(-np.expm1(gap))).reshape(ends.shape)

    @classmethod
    def _log_alive_terms(
        cls, params: FloatArray, x: FloatArray, T: FloatArray, ends: _Ends
    ) -> tuple[FloatArray, FloatArray]:
        """Logs of the two likelihood terms (alive at T; died in (t_x, T)) without the prefactor."""
        r, alpha, s, beta = params
        alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        died = np.log(s) - np.log(r + s + x) + cls._log_a0(params, ends)
        return alive, died

    @classmethod
    def _loglik(cls, params: FloatArray, x: FloatArray, T: FloatArray, ends: _Ends) -> FloatArray:
        r, alpha, s, beta = params
        alive, died = cls._log_alive_terms(params, x, T, ends)
        prefix = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        return prefix + np.logaddexp(alive, died)

    def fit(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> ParetoNBD:
        """Fit by maximum likelihood.

        Args:
            frequency: Repeat purchase days per customer (distinct purchase days - 1).
            recency: Time from first to last purchase.
            T: Time from first purchase to the cutoff.

        Returns:
            The fitted model.
        """
        (ux, ut_x, uT), w, scale = self._prepare(frequency, recency, T)
        ends = _Ends.of(ux, ut_x, uT)
        objective = _numeric_gradient(lambda p: self._loglik(p, ux, uT, ends), w)
        result = _maximise(_with_penalty(objective, self.penalizer), np.zeros(4), "Pareto/NBD")
        r, alpha, s, beta = np.exp(result.x)
        self.r_, self.alpha_ = float(r), float(alpha * scale)
        self.s_, self.beta_ = float(s), float(beta * scale)
        ll = self._loglik(np.array([r, alpha, s, beta]), ux, uT, ends)
        self.log_likelihood_ = float(np.sum(w * ll) - np.sum(w * ux) * np.log(scale))
        self.n_iter_ = int(result.nit)
        return self

    def log_likelihood(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        """Per-customer log-likelihood at the fitted parameters.

        Args:
            frequency: Repeat purchase days per customer.
            recency: Time from first to last purchase.
            T: Time from first purchase to the cutoff.

        Returns:
            Log-likelihood of each customer's (frequency, recency, T).
        """
        params = np.array(self._check_fitted())
        x, t_x, age = _rfm(frequency, recency, T)
        return self._loglik(params, x, age, _Ends.of(x, t_x, age))

    def conditional_probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(alive at T | frequency, recency, T).

        Equal to 1 / (1 + s / (r + s + x) (alpha + T)^(r + x) (beta + T)^s A0); below 1 even
        without repeat purchases, since a Pareto/NBD customer can die at any time.

        Args:
            frequency: Repeat purchase days per customer.
            recency: Time from first to last purchase.
            T: Time from first purchase to the cutoff.

        Returns:
            Probability that each customer is still alive at T.
        """
        params = np.array(self._check_fitted())
        return self._p_alive(params, *_rfm(frequency, recency, T))

    @classmethod
    def _p_alive(
        cls, params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> FloatArray:
        alive, died = cls._log_alive_terms(params, x, T, _Ends.of(x, t_x, T))
        return np.asarray(special.expit(alive - died), dtype=np.float64)

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """Expected purchases in (T, T + t] given the customer's history.

        E[Y(t) | x, t_x, T] = (r + x)(beta + T) / ((alpha + T)(s - 1))
        * [1 - ((beta + T) / (beta + T + t))^(s - 1)] * P(alive), with the limit
        (r + x)(beta + T) / (alpha + T) * log(1 + t / (beta + T)) * P(alive) at s = 1.

        Args:
            t: Length of the prediction horizon, in the time unit of the data.
            frequency: Repeat purchase days per customer.
            recency: Time from first to last purchase.
            T: Time from first purchase to the cutoff.

        Returns:
            Expected number of purchases in the horizon.
        """
        params = np.array(self._check_fitted())
        r, alpha, s, beta = params
        horizon, x, t_x, age = _floats(t, frequency, recency, T)
        if np.any(horizon < 0):
            raise ValueError("t must be >= 0")
        x, t_x, age = _rfm(x, t_x, age)
        rate_time = (
            (r + x) * (beta + age) / (alpha + age) * _lifetime_factor(s, horizon / (beta + age))
        )
        return rate_time * self._p_alive(params, x, t_x, age)

    def expected_purchases(self, t: ArrayLike) -> FloatArray:
        """Expected purchases in (0, t] for a customer who has just made a first purchase.

        E[X(t)] = r beta / (alpha (s - 1)) [1 - (beta / (beta + t))^(s - 1)].

        Args:
            t: Time since the first purchase.

        Returns:
            Expected number of repeat purchases.
        """
        r, alpha, s, beta = self._check_fitted()
        (horizon,) = _floats(t)
        return r * beta / alpha * _lifetime_factor(s, horizon / beta)


def _lifetime_factor(s: float, u: FloatArray) -> FloatArray:
    """[1 - (1 + u)^(1 - s)] / (s - 1), computed with expm1/log1p and its limit log1p(u) at s=1."""
    log_growth = np.log1p(u)
    if abs(s - 1) < 1e-10:
        return log_growth
    return np.asarray(-np.expm1(-(s - 1) * log_growth) / (s - 1), dtype=np.float64)


class GammaGamma(_Fitted):
    """Gamma-Gamma model of average transaction value (Fader, Hardie and Lee 2005, RFM and CLV).

    Transaction values of a customer are Gamma(p, nu), and nu ~ Gamma(q, v) across customers;
    spend is assumed independent of the purchase process.

    Args:
        penalizer: L2 penalty on the log-parameters (money in units of the mean value), added to
            the mean negative log-likelihood; 0 gives the maximum-likelihood fit.

    Attributes:
        p_: Shape of the per-transaction Gamma distribution.
        q_: Shape of the Gamma distribution of the scale across customers.
        v_: Scale of the Gamma distribution across customers, in currency units.
        log_likelihood_: Total log-likelihood of the training data at the fitted parameters.
        n_iter_: Optimiser iterations used.
    """

    _param_names = ("p", "q", "v")

    @staticmethod
    def _loglik_and_grad(
        params: FloatArray, x: FloatArray, m: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Log-density of each mean value m over x transactions, and its gradient in (p, q, v)."""
        p, q, v = params
        px = p * x
        log_vxm = np.log(v + x * m)
        ll = (
            special.gammaln(px + q)
            - special.gammaln(px)
            - special.gammaln(q)
            + q * np.log(v)
            + (px - 1) * np.log(m)
            + px * np.log(x)
            - (px + q) * log_vxm
        )
        psi = special.digamma(px + q)
        grad = np.stack(
            [
                x * (psi - special.digamma(px) + np.log(m) + np.log(x) - log_vxm),
                psi - special.digamma(q) + np.log(v) - log_vxm,
                q / v - (px + q) / (v + x * m),
            ]
        )
        return ll, grad

    def fit(self, frequency: ArrayLike, monetary_value: ArrayLike) -> GammaGamma:
        """Fit by maximum likelihood on customers with repeat purchases.

        Rows with frequency == 0 carry no observed repeat value and are ignored.

        Args:
            frequency: Repeat purchase days per customer.
            monetary_value: Mean value of those repeat purchases.

        Returns:
            The fitted model.

        Raises:
            ValueError: If a repeat customer has a non-positive mean value or none has repeats.
        """
        self._check_penalizer()
        x, m = _floats(frequency, monetary_value)
        keep = x > 0
        x, m = x[keep], m[keep]
        if x.size == 0:
            raise ValueError("Gamma-Gamma needs customers with frequency > 0")
        if np.any(m <= 0):
            raise ValueError("monetary_value must be > 0 where frequency > 0")
        scale = float(m.mean())
        (ux, um), w = _compress(x, m / scale)
        total = w.sum()

        def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
            params = np.exp(log_params)
            ll, grad = self._loglik_and_grad(params, ux, um)
            f = -float(np.sum(w * ll)) / total
            g = -np.sum(grad * w, axis=1) / total * params
            if not np.isfinite(f) or not np.all(np.isfinite(g)):
                return 1e100, np.zeros_like(log_params)
            return f, g

        start = np.log([1.0, 2.0, 1.0])
        result = _maximise(_with_penalty(objective, self.penalizer), start, "Gamma-Gamma")
        p, q, v = np.exp(result.x)
        self.p_, self.q_, self.v_ = float(p), float(q), float(v * scale)
        ll, _ = self._loglik_and_grad(np.array([p, q, v]), ux, um)
        # Back to currency units: the density of a mean value is per unit of money.
        self.log_likelihood_ = float(np.sum(w * ll) - total * np.log(scale))
        self.n_iter_ = int(result.nit)
        return self

    def conditional_expected_average_profit(
        self, frequency: ArrayLike, monetary_value: ArrayLike
    ) -> FloatArray:
        """Expected value of a customer's future transactions.

        E[M | x, m_x] = p (v + x m_x) / (p x + q - 1): a weighted average of the population mean
        p v / (q - 1) and the customer's own mean m_x, the weight on m_x growing with x.
        Customers with frequency == 0 get the population mean.

        Args:
            frequency: Repeat purchase days per customer.
            monetary_value: Mean value of those repeat purchases (ignored where frequency == 0).

        Returns:
            Expected average transaction value.

        Raises:
            ValueError: If q_ <= 1, where the population mean does not exist.
        """
        p, q, v = self._check_fitted()
        if q <= 1:
            raise ValueError(f"q_ = {q:.3g} <= 1: the Gamma-Gamma mean spend is undefined")
        x, m = _floats(frequency, monetary_value)
        m = np.where(x > 0, m, 0.0)
        return p * (v + x * m) / (p * x + q - 1)


def btyd_predict(
    train_summary: pd.DataFrame, score_summary: pd.DataFrame, horizon: float
) -> pd.DataFrame:
    """Fit BG/NBD and Gamma-Gamma on one RFM summary and predict for another over a horizon.

    The spend model falls back to each customer's own mean value (and the train mean for
    customers without repeats) when Gamma-Gamma cannot be fitted or has no finite mean (q <= 1);
    refunds can make a mean value non-positive, so only positive values train Gamma-Gamma.

    Args:
        train_summary: Columns frequency, recency, T, monetary_value, one row per customer, as of
            the training cutoff.
        score_summary: The same columns as of the scoring cutoff.
        horizon: Prediction horizon in the time unit of the summaries.

    Returns:
        Frame on score_summary's index with columns p_alive (BG/NBD), expected_purchases (over
        the horizon) and expected_spend (expected purchases x expected average value, >= 0).
    """
    for name, frame in (("train_summary", train_summary), ("score_summary", score_summary)):
        missing = [c for c in RFM_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks columns {missing}")
    bg = BetaGeo().fit(train_summary["frequency"], train_summary["recency"], train_summary["T"])
    args = (score_summary["frequency"], score_summary["recency"], score_summary["T"])
    p_alive = bg.conditional_probability_alive(*args)
    purchases = bg.conditional_expected_purchases(horizon, *args)
    value = _expected_value(train_summary, score_summary)
    spend = purchases * np.clip(value, 0.0, None)
    columns = dict(zip(PREDICTION_COLUMNS, (p_alive, purchases, spend), strict=True))
    return pd.DataFrame(columns, index=score_summary.index)


def _expected_value(train: pd.DataFrame, score: pd.DataFrame) -> FloatArray:
    """Expected average purchase value per scored customer (Gamma-Gamma, else plain means)."""
    x_train = train["frequency"].to_numpy(dtype=np.float64)
    m_train = train["monetary_value"].to_numpy(dtype=np.float64)
    x = score["frequency"].to_numpy(dtype=np.float64)
    m = score["monetary_value"].to_numpy(dtype=np.float64)
    usable = (x_train > 0) & (m_train > 0)
    model: GammaGamma | None = None
    # Gamma-Gamma needs a few distinct repeat values to identify three parameters.
    if usable.sum() >= 3 and np.ptp(m_train[usable]) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = GammaGamma().fit(x_train[usable], m_train[usable])
    if model is not None and model.q_ > 1:
        return model.conditional_expected_average_profit(x, np.where(m > 0, m, 0.0))
    fallback = float(m_train[usable].mean()) if usable.any() else 0.0
    return np.where(x > 0, m, fallback)
