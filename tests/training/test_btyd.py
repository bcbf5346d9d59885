"""Tests of the BTYD baselines: published CDNOW estimates, quadrature and simulation checks."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from training.btyd import BetaGeo, GammaGamma, ParetoNBD, _Ends, btyd_predict

# Published estimates on CDNOW (2357 customers, time in weeks): Fader, Hardie and Lee (2005)
# for BG/NBD and Gamma-Gamma; Fader and Hardie's Pareto/NBD note (and R BTYD) for Pareto/NBD.
BG_PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
BG_LOG_LIKELIHOOD = -9582.4
PNBD_PUBLISHED = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
PNBD_LOG_LIKELIHOOD = -9595.0
GG_PUBLISHED = {"p": 6.25, "q": 3.74, "v": 15.44}


def _lifetimes_datasets() -> Path:
    # lifetimes only ships the data here; it is located, never imported (it predates numpy 2).
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or spec.origin is None:
        pytest.skip("lifetimes (the CDNOW data files) is not installed")
    return Path(spec.origin).parent / "datasets"


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """CDNOW summary in weeks with monetary values: frequency, recency, T, monetary_value."""
    raw = pd.read_csv(_lifetimes_datasets() / "cdnow_customers_summary_with_transactions.csv")
    summary = raw.rename(
        columns={"x": "frequency", "t_x": "recency", "zbar": "monetary_value"}
    ).set_index("ID")
    assert len(summary) == 2357
    return summary


@pytest.fixture(scope="module")
def bg(cdnow: pd.DataFrame) -> BetaGeo:
    return BetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


@pytest.fixture(scope="module")
def pnbd(cdnow: pd.DataFrame) -> ParetoNBD:
    return ParetoNBD().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def _with_params(model, **params):
    for name, value in params.items():
        setattr(model, f"{name}_", value)
    return model


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


# --- BG/NBD -------------------------------------------------------------------------------


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
    model = _with_params(BetaGeo(), r=r, alpha=alpha, a=a, b=b)
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
    model = _with_params(BetaGeo(), r=r, alpha=alpha, a=a, b=b)
    nudged = _with_params(BetaGeo(), r=r, alpha=alpha, a=a * (1 + 1e-6), b=b)
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


def test_estimators_follow_the_sklearn_contract():
    model = BetaGeo(penalizer=0.1)
    assert clone(model).get_params() == {"penalizer": 0.1}
    with pytest.raises(NotFittedError):
        model.conditional_probability_alive(1, 1, 2)
    with pytest.raises(ValueError, match="penalizer"):
        BetaGeo(penalizer=-1).fit([1], [1], [2])


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "message"),
    [
        ([1, 2], [3.0, 1.0], [2.0, 5.0], "recency"),
        ([-1], [0.0], [2.0], "frequency"),
        ([0], [1.0], [2.0], "frequency is 0"),
        ([1], [np.nan], [2.0], "finite"),
        ([], [], [], "zero customers"),
    ],
)
def test_fit_rejects_bad_summaries(frequency, recency, T, message):
    for model in (BetaGeo(), ParetoNBD()):
        with pytest.raises(ValueError, match=message):
            model.fit(frequency, recency, T)


# --- Pareto/NBD ---------------------------------------------------------------------------


def test_pareto_nbd_matches_published_cdnow_estimates(pnbd: ParetoNBD):
    for name, value in PNBD_PUBLISHED.items():
        assert pnbd.params_[name] == pytest.approx(value, rel=1e-2), name
    assert pnbd.log_likelihood_ == pytest.approx(PNBD_LOG_LIKELIHOOD, abs=0.1)


def test_pareto_nbd_matches_btyd_walkthrough(pnbd: ParetoNBD):
    # R BTYD walkthrough: customer with x = 26, t_x = 30.86, T = 31.
    assert pnbd.conditional_expected_purchases(52, 26, 30.86, 31) == pytest.approx(25.46, abs=0.01)
    published = _with_params(ParetoNBD(), r=0.5534, alpha=10.5802, s=0.6061, beta=11.6562)
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
    model = _with_params(ParetoNBD(), **params)
    x, t_x, T = np.array([400.0, 500, 500]), np.array([5.0, 1, 4]), np.array([6.0, 37, 37])
    log_a0 = ParetoNBD._log_a0(np.array(list(params.values())), _Ends.of(x, t_x, T))
    assert np.all(np.isfinite(log_a0)) and np.all(log_a0 < 0)
    for frequency in (x, x / 10):
        p = model.conditional_probability_alive(frequency, t_x, T)
        assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    smooth = _with_params(ParetoNBD(), r=0.55, alpha=10.58, s=0.61, beta=11.67)
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


# --- Gamma-Gamma --------------------------------------------------------------------------


def test_gamma_gamma_matches_published_cdnow_estimates(cdnow: pd.DataFrame):
    repeat = cdnow[cdnow["frequency"] > 0]
    assert len(repeat) == 946
    gg = GammaGamma().fit(repeat["frequency"], repeat["monetary_value"])
    for name, value in GG_PUBLISHED.items():
        assert gg.params_[name] == pytest.approx(value, rel=1e-2), name
    # Customers without repeats are ignored by the fit.
    again = GammaGamma().fit(cdnow["frequency"], cdnow["monetary_value"])
    assert again.params_ == pytest.approx(gg.params_)


def test_gamma_gamma_matches_hardie_spreadsheet(cdnow: pd.DataFrame):
    gg = _with_params(GammaGamma(), **GG_PUBLISHED)
    head = cdnow.head(10)
    expected = [24.65, 18.91, 35.17, 35.17, 35.17, 71.46, 18.91, 35.17, 27.28, 35.17]
    got = gg.conditional_expected_average_profit(head["frequency"], head["monetary_value"])
    np.testing.assert_allclose(got, expected, atol=0.1)
    population = GG_PUBLISHED["p"] * GG_PUBLISHED["v"] / (GG_PUBLISHED["q"] - 1)
    assert gg.conditional_expected_average_profit(0, 999.0) == pytest.approx(population)


def test_gamma_gamma_refuses_undefined_means():
    with pytest.raises(ValueError, match="q_"):
        _with_params(GammaGamma(), p=2.0, q=0.9, v=1.0).conditional_expected_average_profit(1, 5)
    with pytest.raises(ValueError, match="monetary_value"):
        GammaGamma().fit([1, 2], [10.0, -3.0])
    with pytest.raises(ValueError, match="frequency > 0"):
        GammaGamma().fit([0, 0], [0.0, 0.0])


# --- btyd_predict -------------------------------------------------------------------------


def test_btyd_predict_on_cdnow(cdnow: pd.DataFrame, bg: BetaGeo):
    got = btyd_predict(cdnow, cdnow, horizon=39)
    assert list(got.columns) == ["p_alive", "expected_purchases", "expected_spend"]
    assert got.index.equals(cdnow.index)
    assert np.all(np.isfinite(got.to_numpy())) and (got.to_numpy() >= 0).all()
    args = (cdnow["frequency"], cdnow["recency"], cdnow["T"])
    np.testing.assert_allclose(
        got["expected_purchases"], bg.conditional_expected_purchases(39, *args)
    )
    value = got["expected_spend"] / got["expected_purchases"]
    # Customers without repeats get the Gamma-Gamma population mean, p v / (q - 1) ~ 35.
    newcomers = value[cdnow["frequency"] == 0].to_numpy()
    np.testing.assert_allclose(newcomers, newcomers[0])
    assert newcomers[0] == pytest.approx(35.2, abs=0.5)


def test_btyd_predict_falls_back_without_repeat_values():
    train = pd.DataFrame(
        {"frequency": [0, 0, 1], "recency": [0.0, 0.0, 5.0], "T": [10.0, 20.0, 30.0]}
    ).assign(monetary_value=[0.0, 0.0, 12.0])
    score = train.set_axis(["c1", "c2", "c3"])
    got = btyd_predict(train, score, horizon=30)
    value = got["expected_spend"] / got["expected_purchases"]
    np.testing.assert_allclose(value, [12.0, 12.0, 12.0])
    assert list(got.index) == ["c1", "c2", "c3"]


def test_btyd_predict_reports_missing_columns(cdnow: pd.DataFrame):
    with pytest.raises(ValueError, match="monetary_value"):
        btyd_predict(cdnow.drop(columns="monetary_value"), cdnow, horizon=10)
