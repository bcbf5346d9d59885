"""The batch tests' generated tables and the tiny champion's scorer."""

from __future__ import annotations

import pytest

from features.schema import Tables
from features.synthetic import generate_tables
from serving.scoring.scorer import Scorer
from tests.serving.batch.factories import small_bundle


@pytest.fixture(scope="module")
def tables() -> Tables:
    return generate_tables(400, seed=21)


@pytest.fixture(scope="module")
def scorer(tables: Tables) -> Scorer:
    return Scorer(small_bundle(tables), "7")
