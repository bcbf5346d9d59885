"""Models registered before the tree moved still load and score as they did.

`data/bundle-b960092/` is a bundle saved by the code of commit b960092 (before `serving/` was
split and the formula got one home), with 40 of its feature rows and its own predictions.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from serving.scoring.scorer import Scorer
from training.model import ModelBundle
from training.pyfunc import BUNDLE_ARTIFACT
from training.registry import VafaModel  # the class models logged by the old code name

DATA = Path(__file__).with_name("data")
BUNDLE = DATA / "bundle-b960092"


def old_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    return (
        pd.read_parquet(DATA / "bundle-b960092-features.parquet"),
        pd.read_parquet(DATA / "bundle-b960092-predictions.parquet"),
    )


def test_a_bundle_saved_before_the_move_predicts_what_it_did() -> None:
    features, predicted_then = old_rows()
    predicted_now = ModelBundle.load(BUNDLE).predict(features)
    pd.testing.assert_frame_equal(predicted_now[predicted_then.columns], predicted_then)
    # Fitted before ranges existed: the range columns are there, and empty.
    bounds = predicted_now.drop(columns=predicted_then.columns)
    assert list(bounds.columns) == ["spend_low", "spend_high", "clv_low", "clv_high"]
    assert bounds.isna().all().all()


def test_the_scorer_and_the_old_pyfunc_entry_read_it() -> None:
    features, predicted_then = old_rows()
    bundle = ModelBundle.load(BUNDLE)
    scores = Scorer(bundle, "old").score(features, pd.Timestamp("2026-11-01"))
    np.testing.assert_allclose(scores["clv"], predicted_then["clv"])
    assert scores[["clv_low", "clv_high"]].isna().all().all()  # no ranges, and no crash
    assert scores["recommended_action"].notna().all()
    model = VafaModel()
    model.load_context(SimpleNamespace(artifacts={BUNDLE_ARTIFACT: str(BUNDLE)}))
    answered = model.predict(None, features)
    np.testing.assert_allclose(answered["churn_probability"], predicted_then["churn_probability"])
