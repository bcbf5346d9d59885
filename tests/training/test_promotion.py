"""Promotion: each model judged on features it can read, refused without the champion's inputs."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os

import numpy as np
import pandas as pd
import pytest

import mlflow
from features.build import build_features
from features.population import active_mask
from features.schema import Tables
from tests.training.factories import OPTIONS
from training.metrics import churn_metrics
from training.model import ModelBundle
from training.promotion import CHURN_SHIFT, judge, missing_inputs
from training.registry import CHAMPION, MODEL_NAME, configure_tracking, log_training_run
from training.train import TrainResult

BEATS_ANYTHING = {"churn_model_brier": 0.0, "spend_model_normalized_gini": 1.0}


def renamed_events(tables: Tables) -> Tables:
    """The same shop logging its events under another vocabulary."""
    assert tables.events is not None
    events = tables.events.assign(event="app_" + tables.events["event"].astype("str"))
    return dataclasses.replace(tables, events=events)


def test_a_champion_whose_event_features_this_data_lacks_is_not_judged_on_zeros(
    tables: Tables, trained: TrainResult
) -> None:
    challenger = dataclasses.replace(
        trained, tables=renamed_events(tables), metrics=trained.metrics | BEATS_ANYTHING
    )
    decision = judge(challenger, trained.bundle, "7")
    assert not decision.promoted
    assert "champion v7 cannot be judged on this data" in decision.text
    cutoff = trained.data.churn_plan.valid
    event_types = trained.bundle.spec.event_types
    elsewhere = build_features(renamed_events(tables), cutoff, event_types=event_types)
    missing = missing_inputs(trained.bundle, elsewhere)
    assert "days_since_session" in missing and "recency_days" not in missing
    assert f"{len(missing)} of its inputs are missing or empty here" in decision.text
    # On the data it was trained on, nothing is missing.
    own = build_features(tables, cutoff, event_types=event_types)
    assert missing_inputs(trained.bundle, own) == []


def test_a_challenger_on_another_vocabulary_is_kept_and_the_tag_says_why(
    tables: Tables, trained: TrainResult
) -> None:
    configure_tracking(os.environ["MLFLOW_TRACKING_URI"])
    first = log_training_run(trained, OPTIONS, fingerprint="f", data_dir="d", plots={})
    challenger = dataclasses.replace(
        trained, tables=renamed_events(tables), metrics=trained.metrics | BEATS_ANYTHING
    )
    second = log_training_run(challenger, OPTIONS, fingerprint="g", data_dir="d", plots={})
    assert not second.promoted and "cannot be judged" in second.decision
    run = mlflow.get_run(second.run_id)
    assert run.data.tags["promotion_decision"] == second.decision
    champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, CHAMPION)
    assert str(champion.version) == first.version


def test_the_champion_reads_its_own_features_not_the_challengers(
    tables: Tables, trained: TrainResult
) -> None:
    # A challenger trained without events: its validation rows have no event columns.
    spec = trained.bundle.spec
    event_columns = [c for c in spec.columns if c.startswith(("session_", "days_since_"))]
    assert event_columns
    data = dataclasses.replace(
        trained.data,
        churn_valid=trained.data.churn_valid.drop(columns=event_columns),
        spend_valid=trained.data.spend_valid.drop(columns=event_columns),
    )
    challenger = dataclasses.replace(trained, data=data)
    decision = judge(challenger, trained.bundle, "1")

    rows = trained.data.churn_valid
    active = active_mask(rows, 90)
    own = build_features(tables, trained.data.churn_plan.valid, event_types=spec.event_types)
    own = rows[["customer_id"]].merge(own, on="customer_id")
    honest = churn_metrics(
        rows["churned"][active], trained.bundle.predict(own)["churn_probability"][active]
    )
    on_challenger_rows = churn_metrics(
        rows["churned"][active],
        trained.bundle.predict(data.churn_valid)["churn_probability"][active],
    )
    assert decision.metrics["champion_churn_brier"] == pytest.approx(honest["brier"])
    assert on_challenger_rows["brier"] > honest["brier"] + 0.005


def shifted(bundle: ModelBundle, by: float) -> ModelBundle:
    """The bundle with a churn base whose customers drop out `by` times as readily: riskier."""
    config = copy.deepcopy(bundle.config)
    config["btyd_base"]["churn"]["process"]["a"] *= by
    return dataclasses.replace(bundle, config=config)


def call_the_risky(bundle: ModelBundle, features: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    risky = bundle.predict(features)["churn_probability"].to_numpy() > 0.5
    return pd.Series(np.where(risky, "call", "wait"))


def test_large_shifts_in_scores_and_actions_are_reported_before_promotion(
    trained: TrainResult, caplog: pytest.LogCaptureFixture
) -> None:
    challenger = dataclasses.replace(
        trained, bundle=shifted(trained.bundle, 10.0), metrics=trained.metrics | BEATS_ANYTHING
    )
    with caplog.at_level(logging.WARNING, logger="training.promotion"):
        decision = judge(challenger, trained.bundle, "3", actions=call_the_risky)
    assert decision.promoted and decision.shift is not None
    large = decision.shift.large
    assert any(line.startswith("mean churn_probability") for line in large)
    assert any(line.startswith("action call:") for line in large)
    assert "large shifts: mean churn_probability" in decision.text
    old = decision.shift.metrics["shift_churn_probability_mean_champion"]
    new = decision.shift.metrics["shift_churn_probability_mean_challenger"]
    assert new - old > CHURN_SHIFT
    assert "large shift: mean churn_probability" in caplog.text

    calm = judge(trained, trained.bundle, "3", actions=call_the_risky)
    assert calm.shift is not None and calm.shift.large == []
    assert len(calm.shift.lines) > 4  # every figure is shown, large or not


def test_the_shift_is_logged_with_the_run(trained: TrainResult) -> None:
    configure_tracking(os.environ["MLFLOW_TRACKING_URI"])
    log_training_run(trained, OPTIONS, fingerprint="f", data_dir="d", plots={})
    challenger = dataclasses.replace(trained, bundle=shifted(trained.bundle, 10.0))
    second = log_training_run(
        challenger, OPTIONS, fingerprint="f", data_dir="d", plots={}, actions=call_the_risky
    )
    assert "mean churn_probability" in second.shift and "action call" in second.shift
    run = mlflow.get_run(second.run_id)
    assert run.data.tags["large_score_shifts"].startswith("mean churn_probability")
    assert "shift_churn_probability_mean_challenger" in run.data.metrics
    text = mlflow.artifacts.load_text(f"runs:/{second.run_id}/promotion/score_shift.txt")
    assert text == second.shift
