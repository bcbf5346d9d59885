"""Tests of the shared fitting plumbing: the scikit-learn contract and the input checks."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from training.btyd.beta_geo import BetaGeo
from training.btyd.pareto_nbd import ParetoNBD


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
