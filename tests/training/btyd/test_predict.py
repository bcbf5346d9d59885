"""Tests of btyd_predict: CDNOW predictions, the spend fallback and the column check."""

import numpy as np
import pandas as pd
import pytest

from training.btyd.beta_geo import BetaGeo
from training.btyd.predict import btyd_predict


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
