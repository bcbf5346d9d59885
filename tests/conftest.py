"""Shared fixtures: small hand-made tables and an isolated MLflow store for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from features.schema import Tables
from tests.factories import frame, ts

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


@pytest.fixture(autouse=True)
def _isolated_mlflow(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test tracks and stores scores in its own temporary folder, never the repository."""
    store = tmp_path_factory.mktemp("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.setenv("VAFA_STORE_URL", f"sqlite:///{store / 'scores.db'}")
    return store


@pytest.fixture
def shop() -> Tables:
    """Three customers around an as_of of 2024-02-01 (see test_rfm for the hand computations)."""
    transactions = frame(
        customer_id=["a", "a", "a", "b", "a", "c"],
        ts=ts(
            "2024-01-01", "2024-01-11", "2024-01-11T10:00", "2024-01-05", "2024-03-01", "2024-01-20"
        ),
        amount=[10.0, 20.0, -5.0, 7.0, 100.0, 3.0],
        order_id=["o1", "o2", "o3", "o4", "o5", None],
        margin=[3.0, 5.0, -1.0, 2.0, 30.0, 1.0],
        category=["x", "y", "x", None, "z", "x"],
        discount=[0.0, 2.0, 0.0, 0.0, 0.0, 1.0],
        channel=["app", "web", "app", "web", "app", None],
    )
    events = frame(
        customer_id=["a", "a", "b", "z", "a", "a"],
        ts=ts("2024-01-02", "2024-01-25", "2024-01-03", "2024-01-01", "2024-01-10", "2024-01-20"),
        event=["nps", "product_view", "wish list", "session", "support_ticket", "nps"],
        value=[3.0, None, None, None, None, 9.0],
        channel=[None, None, None, None, None, None],
    )
    customers = frame(
        customer_id=["a", "b"],
        signup_ts=ts("2023-12-01", "2024-02-01"),
        segment=["student", "parent"],
    )
    return Tables(transactions, customers, events)
