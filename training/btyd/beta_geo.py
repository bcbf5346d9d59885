"""BG/NBD model of repeat purchasing (Fader, Hardie and Lee 2005), fitted by maximum likelihood."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special, stats

from training.btyd.fitting import (
    FittedModel,
    FloatArray,
    checked_rfm,
    finite_floats,
    maximise_likelihood,
    with_penalty,
)

# Keeps a model whose a (BG/NBD) sits exactly on the removable singularity at 1 away from 0/0.
SINGULAR_EPS = 1e-7


class BetaGeo(FittedModel):
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

        result = maximise_likelihood(with_penalty(objective, self.penalizer), np.zeros(4), "BG/NBD")
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
        x, t_x, age = checked_rfm(frequency, recency, T)
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
        x, t_x, age = checked_rfm(frequency, recency, T)
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
        horizon, x, t_x, age = finite_floats(t, frequency, recency, T)
        if np.any(horizon < 0):
            raise ValueError("t must be >= 0")
        x, t_x, age = checked_rfm(x, t_x, age)
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
        (horizon,) = finite_floats(t)
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
