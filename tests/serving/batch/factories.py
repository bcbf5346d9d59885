"""A tiny real model bundle and the date it scores as of, shared by the batch tests."""

from __future__ import annotations

import lightgbm as lgb
import pandas as pd

from features.build import build_features
from features.labels import build_labels
from features.schema import Tables
from training.datasets import FeatureSpec
from training.intervals import SpendIntervals
from training.model import Calibrator, ModelBundle, SpendModel
from training.reference import fit_reference
from training.thresholds import SegmentThresholds, reference_population

AS_OF = pd.Timestamp("2026-11-01")
LABEL_DATE = AS_OF - pd.Timedelta(days=120)
PARAMS = {"num_leaves": 7, "verbosity": -1, "num_threads": 1, "seed": 1, "deterministic": True}


def small_bundle(tables: Tables) -> ModelBundle:
    """A real (if tiny) bundle in a second: boosters fit on one labelled snapshot, no tuning."""
    features = build_features(tables, LABEL_DATE)
    labels = build_labels(tables, LABEL_DATE, 90, 90)
    spec = FeatureSpec.from_frame(features, sorted(tables.events["event"].unique()))
    matrix = spec.matrix(features)
    churn = lgb.train(PARAMS | {"objective": "binary"}, lgb.Dataset(matrix, labels["churned"]), 15)
    spend = lgb.train(
        PARAMS | {"objective": "tweedie"}, lgb.Dataset(matrix, labels["future_spend"]), 15
    )
    identity = Calibrator(x=[0.0, 1e9], y=[0.0, 1e9])
    config = {"churn_window_days": 90, "horizon_days": 90, "margin_rate": 0.3}
    bundle = ModelBundle(
        spec,
        churn,
        Calibrator([0.0, 1.0], [0.0, 1.0]),
        SpendModel("tweedie", {"spend": spend}, identity),
        config,
    )
    scored = features.join(bundle.predict(features).drop(columns="customer_id"))
    bundle.config["spend_intervals"] = SpendIntervals.fit(
        scored["predicted_spend"], labels["future_spend"]
    ).to_dict()
    bundle.config["segments"] = SegmentThresholds.fit(
        reference_population(scored, 90), churn_window_days=90
    ).to_dict()
    now = build_features(tables, AS_OF, event_types=spec.event_types)
    bundle.reference = fit_reference(now, bundle.predict(now), AS_OF)
    return bundle
