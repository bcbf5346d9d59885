"""Tests of Gamma-Gamma: published CDNOW estimates and Hardie's spreadsheet."""

import numpy as np
import pandas as pd
import pytest

from tests.training.btyd.factories import with_params
from training.btyd.gamma_gamma import GammaGamma

# Published estimates on CDNOW's repeat buyers: Fader, Hardie and Lee (2005).
GG_PUBLISHED = {"p": 6.25, "q": 3.74, "v": 15.44}


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
    gg = with_params(GammaGamma(), **GG_PUBLISHED)
    head = cdnow.head(10)
    expected = [24.65, 18.91, 35.17, 35.17, 35.17, 71.46, 18.91, 35.17, 27.28, 35.17]
    got = gg.conditional_expected_average_profit(head["frequency"], head["monetary_value"])
    np.testing.assert_allclose(got, expected, atol=0.1)
    population = GG_PUBLISHED["p"] * GG_PUBLISHED["v"] / (GG_PUBLISHED["q"] - 1)
    assert gg.conditional_expected_average_profit(0, 999.0) == pytest.approx(population)


def test_gamma_gamma_refuses_undefined_means():
    with pytest.raises(ValueError, match="q_"):
        with_params(GammaGamma(), p=2.0, q=0.9, v=1.0).conditional_expected_average_profit(1, 5)
    with pytest.raises(ValueError, match="monetary_value"):
        GammaGamma().fit([1, 2], [10.0, -3.0])
    with pytest.raises(ValueError, match="frequency > 0"):
        GammaGamma().fit([0, 0], [0.0, 0.0])
