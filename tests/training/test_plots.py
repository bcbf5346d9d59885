"""The training plots: the TreeSHAP summary is computed on a sample, whatever the rows."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

import training.plots
from training.datasets import FeatureSpec
from training.model import predict
from training.plots import shap_summary


def _model() -> tuple[lgb.Booster, FeatureSpec, pd.DataFrame]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(3000, 3)), columns=["a", "b", "c"])
    frame["customer_id"] = [f"C{i}" for i in range(len(frame))]
    y = (frame["a"] + 0.3 * frame["b"] + rng.normal(size=len(frame)) > 0).astype(float)
    spec = FeatureSpec.from_frame(frame, [])
    params = {"objective": "binary", "verbosity": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(spec.matrix(frame), y), num_boost_round=20)
    return booster, spec, frame


def test_the_shap_summary_reads_a_sample_of_the_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    booster, spec, frame = _model()
    explained: list[int] = []

    def counting(model: lgb.Booster, matrix: pd.DataFrame, **kwargs: Any) -> np.ndarray:
        explained.append(len(matrix))
        return predict(model, matrix, **kwargs)

    monkeypatch.setattr(training.plots, "predict", counting)
    summary = shap_summary(booster, spec, frame, rows=500)
    assert explained == [500]
    assert list(summary.index) == ["a", "b", "c"] and summary.idxmax() == "a"
    # The sample tells the same story as every row: the same order, close values.
    everything = shap_summary(booster, spec, frame, rows=len(frame))
    assert explained[-1] == len(frame)
    assert list(summary.sort_values().index) == list(everything.sort_values().index)
    assert np.allclose(summary, everything, rtol=0.15)
    # Seeded: the same sample every time; fewer rows than the sample: every row.
    assert summary.equals(shap_summary(booster, spec, frame, rows=500))
    shap_summary(booster, spec, frame.head(100), rows=500)
    assert explained[-1] == 100
    assert training.plots.SHAP_SAMPLE <= 5000
