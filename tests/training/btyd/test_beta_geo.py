"""Tests of BG/NBD: published CDNOW estimates, quadrature and simulation checks."""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from tests.training.btyd.factories import with_params
from training.btyd.beta_geo import BetaGeo

# Published estimates on CDNOW (2357 customers, time in weeks): Fader, Hardie and Lee (2005).
BG_PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
BG_LOG_LIKELIHOOD = -9582.4


def simulate_bgnbd(n: int, r: float, alpha: float, a: float, b: float, T, seed: int):
    """Draw (frequency, recency, T) from the BG/NBD process itself."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(r, 1 / alpha, n)
    dropout = rng.beta(a, b, n)
    T = np.broadcast_to(np.asarray(T, dtype=float), (n,)).copy()
    x, t_x, now = np.zeros(n), np.zeros(n), np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        now[idx] += rng.exponential(1 / rate[idx])
        bought = now[idx] <= T[idx]
        buyers = idx[bought]
        x[buyers] += 1
        t_x[buyers] = now[buyers]
        active[idx[~bought]] = False
        # BG/NBD customers may drop out only right after a repeat purchase.
        active[buyers[rng.random(buyers.size) < dropout[buyers]]] = False
    return x, t_x, T


def test_bgnbd_matches_published_cdnow_estimates(bg: BetaGeo):
    for name, value in BG_PUBLISHED.items():
        assert bg.params_[name] == pytest.approx(value, rel=1e-2), name
    assert bg.log_likelihood_ == pytest.approx(BG_LOG_LIKELIHOOD, abs=0.1)


def test_bgnbd_matches_hardie_spreadsheet_expectations(bg: BetaGeo):
    # Customer 1 of CDNOW, 39 weeks ahead (Fader, Hardie and Lee 2005).
    assert bg.conditional_expected_purchases(39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=1e-3)
    times = [0.1429, 1.0, 3.0, 31.8571, 32.0, 78.0]
    expected = [0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576]
    np.testing.assert_allclose(bg.expected_purchases(times), expected, atol=1e-3)


def test_bgnbd_log_likelihood_sums_to_the_fit(bg: BetaGeo, cdnow: pd.DataFrame):
    per_customer = bg.log_likelihood(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert per_customer.sum() == pytest.approx(bg.log_likelihood_)


def test_bgnbd_is_unit_free(bg: BetaGeo, cdnow: pd.DataFrame):
    days = BetaGeo().fit(cdnow["frequency"], 7 * cdnow["recency"], 7 * cdnow["T"])
    for name in ("r", "a", "b"):
        assert days.params_[name] == pytest.approx(bg.params_[name], rel=1e-4)
    assert days.alpha_ == pytest.approx(7 * bg.alpha_, rel=1e-4)
    shift = cdnow["frequency"].sum() * np.log(7)
    assert days.log_likelihood_ == pytest.approx(bg.log_likelihood_ - shift, abs=1e-3)


def test_bgnbd_p_alive_is_one_without_repeats_and_a_probability(bg: BetaGeo):
    assert np.all(bg.conditional_probability_alive([0, 0], [0, 0], [1.0, 50.0]) == 1.0)
    x, t_x, T = np.meshgrid(np.arange(0, 100, 7.0), np.arange(0, 60, 6.0), [60.0, 80.0])
    t_x = np.where(x == 0, 0.0, t_x)
    p = bg.conditional_probability_alive(x, t_x, T)
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(np.isfinite(bg.conditional_expected_purchases(52, x, t_x, T)))


def test_bgnbd_expectations_move_the_right_way(bg: BetaGeo):
    # Buying more often while still active (recency == T) raises expected purchases.
    freq = np.arange(1.0, 30.0)
    rising = bg.conditional_expected_purchases(39, freq, 38.0, 38.0)
    assert np.all(np.diff(rising) > 0)
    # A longer silence since the last purchase (T - recency growing) lowers them, whether the
    # last purchase moves back or the cutoff moves on.
    by_recency = bg.conditional_expected_purchases(39, 5.0, np.linspace(38.0, 1.0, 20), 38.0)
    assert np.all(np.diff(by_recency) < 0)
    by_age = bg.conditional_expected_purchases(39, 5.0, 10.0, np.linspace(10.0, 80.0, 20))
    assert np.all(np.diff(by_age) < 0)
    assert np.all(np.diff(bg.conditional_expected_purchases(np.arange(0.0, 60.0), 3, 20, 38)) > 0)


@pytest.mark.parametrize(
    ("r", "alpha", "a", "b"),
    [
        (0.243, 4.414, 0.793, 2.426),  # CDNOW
        (1.3, 2.0, 0.45, 0.4),  # a + b < 1: the 2F1 goes negative for x = 0
        (0.8, 30.0, 1.0, 3.0),  # a = 1: removable singularity
        (2.0, 0.5, 4.0, 9.0),
    ],
)
def test_bgnbd_expectation_matches_quadrature(r, alpha, a, b):
    # E[Y(t)] = P(alive) * E[(1 - exp(-lambda p t)) / p] over the posterior lambda ~
    # Gamma(r + x, alpha + T), p ~ Beta(a, b + x): a route that shares no algebra with the code.
    model = with_params(BetaGeo(), r=r, alpha=alpha, a=a, b=b)
    for x, t_x, T, t in [(0, 0.0, 20.0, 30.0), (3, 12.0, 20.0, 5.0), (12, 19.5, 20.0, 52.0)]:

        def integrand(log_p, x=x, T=T, t=t):
            # Over log p: the 1/p of the expectation cancels the Jacobian p.
            p = np.exp(log_p)
            growth = (r + x) * np.log1p(p * t / (alpha + T))
            return np.exp(stats.beta.logpdf(p, a, b + x) + np.log(-np.expm1(-growth)))

        mean, _ = integrate.quad(integrand, -700, 0, epsabs=0, epsrel=1e-12, limit=400)
        expected = model.conditional_probability_alive(x, t_x, T) * mean
        got = model.conditional_expected_purchases(t, x, t_x, T)
        # a = 1 is evaluated at 1 + 1e-7, hence not 1e-10.
        assert got == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize(
    ("r", "alpha", "a", "b", "x"),
    [
        (0.5, 5.0, 0.5, 3.0, 200.0),  # r - a integer: scipy's hyp2f1 returns NaN here
        (2.37, 40.9, 697.0, 0.742, 2.0),  # huge a: the transformed 2F1 overflows
        (0.3, 2.0, 0.8, 2.0e5, 0.0),  # huge b
    ],
)
def test_bgnbd_expectation_is_finite_and_smooth_where_hyp2f1_fails(r, alpha, a, b, x):
    model = with_params(BetaGeo(), r=r, alpha=alpha, a=a, b=b)
    nudged = with_params(BetaGeo(), r=r, alpha=alpha, a=a * (1 + 1e-6), b=b)
    args = (365.0, x, 9.0 if x else 0.0, 10.0)
    got = model.conditional_expected_purchases(*args)
    assert np.isfinite(got) and 0 <= got <= (r + x) * 365 / (alpha + 10)
    assert got == pytest.approx(nudged.conditional_expected_purchases(*args), rel=1e-4)
    assert np.isfinite(model.expected_purchases(365.0))


def test_bgnbd_recovers_simulated_parameters():
    truth = {"r": 0.5, "alpha": 30.0, "a": 0.8, "b": 3.0}
    T = np.random.default_rng(7).uniform(30, 730, 20_000)
    x, t_x, T = simulate_bgnbd(20_000, **truth, T=T, seed=11)
    fitted = BetaGeo().fit(x, t_x, T)
    for name, value in truth.items():
        assert fitted.params_[name] == pytest.approx(value, rel=0.15), name


def test_bgnbd_penalizer_shrinks_towards_one(bg: BetaGeo, cdnow: pd.DataFrame):
    shrunk = BetaGeo(penalizer=1.0).fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert abs(np.log(shrunk.r_)) < abs(np.log(bg.r_))
    assert abs(np.log(shrunk.b_)) < abs(np.log(bg.b_))
