"""Hand-made scores and run folders, and generated data with two runs, for the dashboard tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from features.build import build_features
from features.io import write_tables
from features.population import active_mask
from features.synthetic import generate_tables


def scores_frame(**overrides: object) -> pd.DataFrame:
    """Four customers with round numbers: equity 1000, value at risk 50+100+150+0 = 300.

    The lapsed one (c) is outside the decision population: the active three hold equity 700,
    value at risk 150 and a mean churn probability of 0.25 (0.3125 over all four).
    """
    columns: dict[str, object] = {
        "customer_id": ["a", "b", "c", "d"],
        "as_of": pd.Timestamp("2024-06-01"),
        "churn_probability": [0.5, 0.25, 0.5, 0.0],
        "clv": [100.0, 400.0, 300.0, 200.0],
        "segment": ["at_risk", "vip", "at_risk", "loyal"],
        "value_tier": ["mid", "high", "high", "mid"],
        "lifecycle_stage": ["active", "active", "lapsed", "new"],
        "active_customer": [True, True, False, True],
        "recommended_action": ["call", "no_action", "email", "no_action"],
        "reasons": ["late", "", "no content", ""],
        "model_version": "3",
    }
    columns.update(overrides)
    scores = pd.DataFrame(columns)
    scores["value_at_risk"] = scores["churn_probability"] * scores["clv"]
    return scores


def write_run(
    root: Path, as_of: str, scores: pd.DataFrame, summary: dict[str, object] | None = None
) -> Path:
    """A run folder `as_of=DATE/` holding the scores (and the summary, when given)."""
    folder = root / f"as_of={as_of}"
    folder.mkdir(parents=True)
    scores.assign(as_of=pd.Timestamp(as_of)).to_parquet(folder / "scores.parquet")
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def make_runs(root: Path, customers: int = 300) -> tuple[Path, Path]:
    """Generated data and two runs of made-up scores for its customers (no model needed)."""
    data = root / "data"
    tables = generate_tables(customers, seed=5, end="2026-11-01")
    write_tables(tables, data)
    rng = np.random.default_rng(0)
    for as_of in ("2026-09-01", "2026-11-01"):
        features = build_features(tables, as_of)
        ids = features["customer_id"]
        churn = rng.uniform(0, 1, len(ids))
        clv = rng.gamma(1.0, 100.0, len(ids))
        write_run(
            root / "scores",
            as_of,
            pd.DataFrame(
                {
                    "customer_id": ids,
                    "churn_probability": churn,
                    "clv": clv,
                    "value_at_risk": churn * clv,
                    "active_customer": active_mask(features, 90),
                    "segment": rng.choice(["vip", "at_risk", "loyal"], len(ids)),
                    "value_tier": rng.choice(["low", "mid", "high"], len(ids)),
                    "recommended_action": rng.choice(["call", "no_action"], len(ids)),
                    "reasons": "recency is long",
                    "model_version": "1",
                }
            ),
        )
    return root / "scores", data
