"""Batch scoring of every customer as of a date, written aside and swapped in whole."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.build import build_features
from features.io import write_frame
from features.schema import Tables
from serving.scorer import NO_ACTION, Scorer


@dataclass(frozen=True)
class BatchResult:
    """Where the scores went and what the run looked like."""

    folder: Path
    scores: pd.DataFrame
    summary: dict[str, object]


def score_all(
    tables: Tables, as_of: pd.Timestamp, scorer: Scorer
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Features and scores of every customer with a transaction before `as_of`, with timings."""
    started = time.perf_counter()
    features = build_features(tables, as_of, event_types=scorer.bundle.spec.event_types or None)
    built = time.perf_counter()
    scores = scorer.score(features, as_of)
    done = time.perf_counter()
    return scores, {"features_seconds": built - started, "scoring_seconds": done - built}


def summarise(scores: pd.DataFrame, timings: dict[str, float]) -> dict[str, object]:
    """Counts, distributions and model versions of one run, for people and for monitoring."""
    quantiles = [0.1, 0.5, 0.9]
    return {
        "customers": len(scores),
        "model_versions": sorted(scores["model_version"].unique().tolist()),
        "customer_equity": float(scores["clv"].sum()),
        "value_at_risk": float(scores["value_at_risk"].sum()),
        "mean_churn_probability": float(scores["churn_probability"].mean()),
        "churn_probability_quantiles": scores["churn_probability"]
        .quantile(quantiles)
        .round(4)
        .tolist(),
        "clv_quantiles": scores["clv"].quantile(quantiles).round(2).tolist(),
        "actions": scores["recommended_action"].value_counts().to_dict(),
        "with_action": int((scores["recommended_action"] != NO_ACTION).sum()),
        "segments": scores["segment"].value_counts().to_dict(),
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
    }


def write_scores(
    scores: pd.DataFrame, summary: dict[str, object], out_dir: Path, as_of: pd.Timestamp
) -> Path:
    """Write `out_dir/as_of=YYYY-MM-DD/` aside and swap it in: a failed run leaves the old one."""
    final = out_dir / f"as_of={as_of.date()}"
    staging = out_dir / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        write_frame(scores, staging / "scores.parquet")
        write_frame(scores, staging / "scores.csv")
        (staging / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        if final.exists():
            retired = out_dir / f".retired-{uuid.uuid4().hex}"
            os.replace(final, retired)
            os.replace(staging, final)
            shutil.rmtree(retired)
        else:
            os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return final
