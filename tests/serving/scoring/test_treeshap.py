"""The tabled TreeSHAP gives LightGBM's own `pred_contrib` values, whatever the trees split on."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from serving.scoring import treeshap
from serving.scoring.treeshap import GroupedTreeShap

N_FEATURES = 7


def data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Numbers with NaNs and exact zeros, and two categorical columns (codes, NaN when null)."""
    rng = np.random.default_rng(seed)
    n = 3000
    x = rng.normal(size=(n, N_FEATURES))
    x[:, 2] = np.where(rng.random(n) < 0.3, 0.0, x[:, 2])  # many zeros
    x[:, 3] = np.where(rng.random(n) < 0.2, np.nan, x[:, 3])  # missing values
    x[:, 5] = rng.integers(0, 12, n)  # categorical, 12 levels
    x[:, 6] = np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 4, n))
    logit = (
        x[:, 0] * x[:, 1]
        + np.nan_to_num(x[:, 3])
        + np.isin(x[:, 5], [1, 4, 7]) * 1.5
        - (x[:, 2] == 0) * 0.8
        + (x[:, 6] == 2) * 0.7
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return x, y


def train(x: np.ndarray, y: np.ndarray, **params: object) -> lgb.Booster:
    settings = {
        "objective": "binary",
        "num_leaves": 31,
        "max_depth": 6,
        "min_data_in_leaf": 5,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "verbose": -1,
        "seed": 3,
    } | params
    dataset = lgb.Dataset(x, y, categorical_feature=[5, 6])
    return lgb.train(settings, dataset, num_boost_round=40)


def unseen_rows(seed: int) -> np.ndarray:
    """Rows the trees never saw, with the awkward values: NaN, zero, negative or unseen levels."""
    x, _ = data(seed)
    x = x[:400].copy()
    x[::7, 0] = np.nan
    x[::5, 5] = np.nan
    x[::11, 5] = 30.0  # a level the model never saw
    x[::13, 6] = -1.0
    x[::3, 2] = 0.0
    return x


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"zero_as_missing": True},  # splits whose missing type is "Zero"
        {"use_missing": False},  # NaN read as zero
        {"max_depth": 3, "num_leaves": 8, "bagging_fraction": 0.7, "bagging_freq": 1},
        {"max_depth": -1, "num_leaves": 40, "min_data_in_leaf": 2},  # deep, repeated features
    ],
)
def test_values_equal_lightgbm_pred_contrib(params: dict[str, object]) -> None:
    x, y = data(0)
    booster = train(x, y, **params)
    explainer = GroupedTreeShap.for_booster(booster, np.arange(N_FEATURES), N_FEATURES)
    rows = unseen_rows(1)
    expected = booster.predict(rows, pred_contrib=True)[:, :-1]
    assert explainer is not None
    np.testing.assert_allclose(explainer(rows), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(explainer(rows, num_threads=1), expected, rtol=1e-9, atol=1e-12)


def test_groups_sum_their_features() -> None:
    x, y = data(2)
    booster = train(x, y)
    groups = np.array([0, 0, 1, 2, 1, 3, 3])
    explainer = GroupedTreeShap.for_booster(booster, groups, 4)
    assert explainer is not None
    rows = unseen_rows(3)
    contributions = booster.predict(rows, pred_contrib=True)[:, :-1]
    expected = np.stack([contributions[:, groups == g].sum(axis=1) for g in range(4)], axis=1)
    np.testing.assert_allclose(explainer(rows), expected, rtol=1e-9, atol=1e-12)
    assert explainer(rows[:0]).shape == (0, 4)


def test_paths_too_long_to_table_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = data(4)
    booster = train(x, y)
    assert GroupedTreeShap.for_booster(booster, np.arange(N_FEATURES), N_FEATURES) is not None
    monkeypatch.setattr(treeshap, "MAX_PATH_FEATURES", 2)
    assert GroupedTreeShap.for_booster(booster, np.arange(N_FEATURES), N_FEATURES) is None


def test_threads_may_explain_at_once() -> None:
    """The service's scoring thread and a model load may both explain rows at the same time."""
    from concurrent.futures import ThreadPoolExecutor

    x, y = data(5)
    booster = train(x, y)
    explainer = GroupedTreeShap.for_booster(booster, np.arange(N_FEATURES), N_FEATURES)
    assert explainer is not None
    rows = unseen_rows(6)
    expected = explainer(rows)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda t: explainer(rows, num_threads=t % 2), range(16)))
    for result in results:
        np.testing.assert_array_equal(result, expected)
