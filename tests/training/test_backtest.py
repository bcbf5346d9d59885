"""Backtest tables: the decision population first, every customer beside it, named as such."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.labels import build_labels
from features.schema import Tables
from tests.training.factories import OPTIONS
from training.backtest import CHURN_ROWS, BacktestResult, backtest
from training.metrics import churn_metrics, spend_metrics
from training.train import TrainResult

T = pd.Timestamp("2026-05-01")


@pytest.fixture(scope="module")
def graded(tables: Tables, trained: TrainResult) -> BacktestResult:
    # The model itself is not under test here: the session's trained bundle stands in for one
    # trained as of T, so the tables are graded without another tuning run.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("training.backtest.train_models", lambda *args, **kwargs: trained)
        return backtest(tables, T, dataclasses.replace(OPTIONS, horizon_days=180))


def test_backtest_metrics_are_over_the_active_customers_with_everyone_beside(
    tables: Tables, trained: TrainResult, graded: BacktestResult
) -> None:
    features = build_features(tables, T, event_types=trained.bundle.spec.event_types)
    labels = build_labels(tables, T, 90, 180, 0.3)
    scored = features.merge(labels, on="customer_id")
    predictions = trained.bundle.predict(scored)
    active = (scored["recency_days"] <= 90).to_numpy()
    assert graded.n_customers == len(scored) and graded.n_active == active.sum()
    assert 0 < graded.n_active < graded.n_customers

    y, p = scored["churned"].to_numpy(), predictions["churn_probability"].to_numpy()
    among_active, everyone = churn_metrics(y[active], p[active]), churn_metrics(y, p)
    for name in CHURN_ROWS:
        assert graded.churn.loc[name, "model"] == pytest.approx(among_active[name])
        assert graded.churn_all.loc[name, "model"] == pytest.approx(everyone[name])
    spend = spend_metrics(scored["future_spend"][active], predictions["predicted_spend"][active])
    assert graded.spend.loc["normalized_gini", "model"] == pytest.approx(spend["normalized_gini"])
    assert list(graded.churn.columns) == ["model", "recency", "bgnbd", "pareto_nbd"]
    assert list(graded.spend.columns) == ["model", "last_period", "bgnbd_gg", "pareto_nbd_gg"]
    assert np.isfinite(graded.churn_all.loc["roc_auc", "recency"])


def test_backtest_names_both_populations_in_its_tables_and_mlflow_metrics(
    graded: BacktestResult,
) -> None:
    text = graded.render()
    assert f"{graded.n_active:,} active customers of {graded.n_customers:,}" in text
    assert f"churn, all {graded.n_customers:,} customers" in text
    flat = graded.flat_metrics()
    assert flat["backtest_churn_model_roc_auc"] == graded.churn.loc["roc_auc", "model"]
    assert flat["backtest_churn_model_roc_auc_all"] == graded.churn_all.loc["roc_auc", "model"]
    assert "backtest_spend_bgnbd_gg_normalized_gini_all" in flat
