"""Tests of Pareto/NBD: published CDNOW estimates and quadrature checks of the A0 term."""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from tests.training.btyd.factories import with_params
from training.btyd.beta_geo import BetaGeo
from training.btyd.pareto_nbd import ParetoNBD, _Ends

# Published estimates on CDNOW (time in weeks): Fader and Hardie's Pareto/NBD note (and R BTYD).
PNBD_PUBLISHED = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
PNBD_LOG_LIKELIHOOD = -9595.0


def test_pareto_nbd_matches_published_cdnow_estimates(pnbd: ParetoNBD):
    for name, value in PNBD_PUBLISHED.items():
        assert pnbd.params_[name] == pytest.approx(value, rel=1e-2), name
    assert pnbd.log_likelihood_ == pytest.approx(PNBD_LOG_LIKELIHOOD, abs=0.1)


def test_pareto_nbd_matches_btyd_walkthrough(pnbd: ParetoNBD):
    # R BTYD walkthrough: customer with x = 26, t_x = 30.86, T = 31.
    assert pnbd.conditional_expected_purchases(52, 26, 30.86, 31) == pytest.approx(25.46, abs=0.01)
    published = with_params(ParetoNBD(), r=0.5534, alpha=10.5802, s=0.6061, beta=11.6562)
    assert published.conditional_probability_alive(26, 30.86, 31) == pytest.approx(0.9979, abs=1e-3)
    btyd = [0.0, 0.0508, 0.0992, 0.1454, 0.1898, 0.2325, 0.2736, 0.3134, 0.3518, 0.3891]
    np.testing.assert_allclose(pnbd.expected_purchases(np.arange(10.0)), btyd, atol=0.01)


@pytest.mark.parametrize(
    "params",
    [
        (0.55, 10.6, 0.61, 11.7),
        (0.55, 11.7, 0.61, 10.6),
        (2.0, 0.3, 3.0, 40.0),
        (0.3, 50, 0.2, 0.1),
    ],
)
def test_pareto_nbd_a0_matches_quadrature(params):
    r, alpha, s, beta = params
    x = np.array([0.0, 1.0, 7.0, 40.0, 3.0])
    t_x = np.array([0.0, 2.0, 20.0, 29.0, 30.0])
    T = np.array([15.0, 30.0, 30.0, 30.0, 30.0])
    got = ParetoNBD._log_a0(np.array(params), _Ends.of(x, t_x, T))
    # A purchase on the cutoff leaves no time to die unobserved: A0 = 0.
    assert got[-1] == -np.inf
    for i in range(len(x) - 1):
        rsx = r + s + x[i]

        def integrand(u, i=i):
            return (alpha + u) ** -(r + x[i]) * (beta + u) ** -(s + 1)

        integral, _ = integrate.quad(integrand, t_x[i], T[i], epsabs=0, epsrel=1e-12)
        assert got[i] == pytest.approx(np.log(rsx * integral), abs=1e-8)


def test_pareto_nbd_a0_falls_back_where_hyp2f1_fails():
    # A heavy buyer with alpha >> beta: scipy's hyp2f1(1, 300.5; ...; z > 0.99) is NaN.
    r, alpha, s, beta, x, t_x, T = 0.5, 1e4, 0.6, 10.0, 300.0, 5.0, 50.0
    got = ParetoNBD._log_a0(
        np.array([r, alpha, s, beta]), _Ends.of(np.array([x]), np.array([t_x]), np.array([T]))
    )[0]

    def scaled(u):
        return np.exp(-(r + x) * np.log1p(u / (alpha + t_x)) - (s + 1) * np.log1p(u / (beta + t_x)))

    integral, _ = integrate.quad(scaled, 0, T - t_x, epsabs=0, epsrel=1e-12)
    log_scale = -(r + x) * np.log(alpha + t_x) - (s + 1) * np.log(beta + t_x)
    assert got == pytest.approx(np.log(r + s + x) + log_scale + np.log(integral), abs=1e-8)


def test_pareto_nbd_survives_extreme_customers():
    # Cases that overflowed older implementations (lifetimes' regression tests).
    params = {"r": 10.465, "alpha": 7.98565181e-03, "s": 3.0516, "beta": 2.820}
    model = with_params(ParetoNBD(), **params)
    x, t_x, T = np.array([400.0, 500, 500]), np.array([5.0, 1, 4]), np.array([6.0, 37, 37])
    log_a0 = ParetoNBD._log_a0(np.array(list(params.values())), _Ends.of(x, t_x, T))
    assert np.all(np.isfinite(log_a0)) and np.all(log_a0 < 0)
    for frequency in (x, x / 10):
        p = model.conditional_probability_alive(frequency, t_x, T)
        assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    smooth = with_params(ParetoNBD(), r=0.55, alpha=10.58, s=0.61, beta=11.67)
    left, right = smooth.conditional_expected_purchases(10, [132, 133], 200, 200)
    assert abs(left - right) < 0.05


def test_pareto_nbd_p_alive_below_one_without_repeats(pnbd: ParetoNBD):
    p = pnbd.conditional_probability_alive([0, 0, 0], [0, 0, 0], [1.0, 20.0, 60.0])
    assert np.all((p > 0) & (p < 1))
    assert np.all(np.diff(p) < 0)


def test_pareto_nbd_and_bgnbd_agree_on_cdnow(bg: BetaGeo, pnbd: ParetoNBD, cdnow: pd.DataFrame):
    args = (cdnow["frequency"], cdnow["recency"], cdnow["T"])
    rho = stats.spearmanr(
        bg.conditional_expected_purchases(39, *args), pnbd.conditional_expected_purchases(39, *args)
    ).statistic
    assert rho > 0.95


def test_the_tail_fallback_matches_adaptive_quadrature() -> None:
    """Where hyp2f1 fails the tail integral is a fixed quadrature: within 1e-3 in log."""
    from scipy import integrate

    from training.btyd.pareto_nbd import _pareto_log_tails

    def adaptive(r: float, alpha: float, s: float, beta: float, x: float, u: float) -> float:
        def scaled(w: float) -> float:
            return float(
                np.exp(-(r + x) * np.log1p(w / (alpha + u)) - (s + 1) * np.log1p(w / (beta + u)))
            )

        integral, _ = integrate.quad(scaled, 0, np.inf, epsabs=0, epsrel=1e-12, limit=200)
        scale = -(r + x) * np.log(alpha + u) - (s + 1) * np.log(beta + u)
        return float(np.log(r + s + x) + scale + np.log(integral))

    rng = np.random.default_rng(0)
    for _ in range(40):
        r, s, alpha, beta = rng.lognormal(0, 1.5), rng.lognormal(0, 1.5), *rng.lognormal(0, 2, 2)
        x, u = rng.integers(0, 300, 10).astype(float), rng.uniform(0, 10, 10)
        exact = [adaptive(r, alpha, s, beta, xi, ui) for xi, ui in zip(x, u, strict=True)]
        np.testing.assert_allclose(_pareto_log_tails(r, alpha, s, beta, x, u), exact, atol=1e-3)
