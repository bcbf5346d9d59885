"""Gamma-Gamma model of average transaction value, fitted by maximum likelihood."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from training.btyd.fitting import (
    FittedModel,
    FloatArray,
    compress_rows,
    finite_floats,
    maximise_likelihood,
    with_penalty,
)


class GammaGamma(FittedModel):
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
        x, m = finite_floats(frequency, monetary_value)
        keep = x > 0
        x, m = x[keep], m[keep]
        if x.size == 0:
            raise ValueError("Gamma-Gamma needs customers with frequency > 0")
        if np.any(m <= 0):
            raise ValueError("monetary_value must be > 0 where frequency > 0")
        scale = float(m.mean())
        (ux, um), w = compress_rows(x, m / scale)
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
        result = maximise_likelihood(with_penalty(objective, self.penalizer), start, "Gamma-Gamma")
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
        x, m = finite_floats(frequency, monetary_value)
        m = np.where(x > 0, m, 0.0)
        return p * (v + x * m) / (p * x + q - 1)
