"""One generated shop and one model trained on it, shared by the training tests."""

from __future__ import annotations

import pytest

from features.schema import Tables
from features.synthetic import generate_tables
from tests.training.factories import AS_OF, OPTIONS
from training.train import TrainResult, train_models


@pytest.fixture(scope="session")
def tables() -> Tables:
    return generate_tables(1500, seed=11)


@pytest.fixture(scope="session")
def trained(tables: Tables) -> TrainResult:
    return train_models(tables, AS_OF, OPTIONS)
