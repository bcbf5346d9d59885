"""CDNOW, the data set the BTYD papers publish estimates on, and the models fitted to it."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from training.btyd.beta_geo import BetaGeo
from training.btyd.pareto_nbd import ParetoNBD


def _lifetimes_datasets() -> Path:
    # lifetimes only ships the data here; it is located, never imported (it predates numpy 2).
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or spec.origin is None:
        pytest.skip("lifetimes (the CDNOW data files) is not installed")
    return Path(spec.origin).parent / "datasets"


@pytest.fixture(scope="package")
def cdnow() -> pd.DataFrame:
    """CDNOW summary in weeks with monetary values: frequency, recency, T, monetary_value."""
    raw = pd.read_csv(_lifetimes_datasets() / "cdnow_customers_summary_with_transactions.csv")
    summary = raw.rename(
        columns={"x": "frequency", "t_x": "recency", "zbar": "monetary_value"}
    ).set_index("ID")
    assert len(summary) == 2357
    return summary


@pytest.fixture(scope="package")
def bg(cdnow: pd.DataFrame) -> BetaGeo:
    return BetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


@pytest.fixture(scope="package")
def pnbd(cdnow: pd.DataFrame) -> ParetoNBD:
    return ParetoNBD().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
