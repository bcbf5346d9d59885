"""Watching the nightly run: drift against the champion's training population, stale data, MLflow.

Drift is the population stability index (PSI) of every feature and score against the histograms
stored with the champion (`training.reference`); counts are added up chunk by chunk, so drift of
a million customers never needs their features in memory at once. Stale data is a table whose
latest row before the date is too old, or whose last days hold far fewer rows than usual: the
feed stopped or arrived half, and the scores would quietly describe the past.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.schema import Tables
from serving.scoring.columns import INTERVAL_COLUMNS
from training.reference import Histogram, psi

log = logging.getLogger(__name__)

SCORING_EXPERIMENT = "vafa-scoring"
DRIFT_THRESHOLD = 0.25  # PSI above which a shift counts as significant (the usual rule of thumb)


@dataclass(frozen=True)
class FreshnessRules:
    """When a table counts as stale.

    Attributes:
        max_lag_days: the latest row before the date may be at most this many days old.
        recent_days: the last days whose volume is checked ...
        baseline_days: ... against the mean volume of this many days before them.
        min_volume_ratio: recent daily volume below this share of the baseline is stale.
    """

    max_lag_days: float = 2.0
    recent_days: int = 7
    baseline_days: int = 28
    min_volume_ratio: float = 0.5


def check_freshness(
    tables: Tables,
    as_of: pd.Timestamp,
    rules: FreshnessRules = FreshnessRules(),
    *,
    expect_events: bool = False,
) -> dict[str, Any]:
    """Lag and recent volume of transactions and events before `as_of`, with the flags raised.

    Reads only rows with ts < as_of. A missing events table is flagged when the model uses
    event features (`expect_events`): its customers would all look disengaged.

    Returns:
        {"tables": {name: figures}, "flags": [messages]}; no flags means fresh.
    """
    out: dict[str, Any] = {"tables": {}, "flags": []}
    cutoff = pd.Timestamp(as_of)
    for name in ("transactions", "events"):
        frame = getattr(tables, name)
        if frame is None:
            if name == "events" and expect_events:
                out["flags"].append("events: table missing, but the model uses event features")
            continue
        ts = frame["ts"].to_numpy()
        ts = ts[ts < cutoff.to_datetime64()]
        figures: dict[str, Any] = {"rows_before_as_of": int(ts.size)}
        out["tables"][name] = figures
        if not ts.size:
            out["flags"].append(f"{name}: no rows before {cutoff.date()}")
            continue
        last = pd.Timestamp(ts.max())
        lag = (cutoff - last) / pd.Timedelta(days=1)
        recent_start = cutoff - pd.Timedelta(days=rules.recent_days)
        base_start = recent_start - pd.Timedelta(days=rules.baseline_days)
        recent = int((ts >= recent_start.to_datetime64()).sum())
        base = int(((ts >= base_start.to_datetime64()) & (ts < recent_start.to_datetime64())).sum())
        ratio = (recent / rules.recent_days) / (base / rules.baseline_days) if base else math.nan
        figures |= {
            "last_ts": str(last),
            "lag_days": round(lag, 2),
            f"rows_last_{rules.recent_days}_days": recent,
            "recent_volume_ratio": None if math.isnan(ratio) else round(ratio, 3),
        }
        if lag > rules.max_lag_days:
            out["flags"].append(
                f"{name}: latest row {last} is {lag:.1f} days before {cutoff.date()} "
                f"(more than {rules.max_lag_days:g})"
            )
        if not math.isnan(ratio) and ratio < rules.min_volume_ratio:
            out["flags"].append(
                f"{name}: the last {rules.recent_days} days hold {ratio:.0%} of the usual daily "
                f"volume (below {rules.min_volume_ratio:.0%})"
            )
    return out


@dataclass
class DriftMonitor:
    """Adds up bin counts of features and scores, chunk by chunk; then PSI per column.

    Attributes:
        reference: the champion's reference (`ModelBundle.reference`); None = not measurable.
        threshold: PSI above which a column is flagged.
    """

    reference: Mapping[str, Any] | None
    threshold: float = DRIFT_THRESHOLD
    _histograms: dict[str, dict[str, Histogram]] = field(init=False, repr=False)
    _counts: dict[str, dict[str, np.ndarray]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ref = self.reference or {}
        self._histograms = {
            kind: {
                c: Histogram.from_dict(h)
                for c, h in ref.get(kind, {}).items()
                if c not in INTERVAL_COLUMNS  # the ranges move with the values: watched there
            }
            for kind in ("features", "scores")
        }
        self._counts = {"features": {}, "scores": {}}

    def add_features(self, features: pd.DataFrame) -> None:
        """Count one chunk's feature rows into the reference bins."""
        self._add("features", features)

    def add_scores(self, scores: pd.DataFrame) -> None:
        """Count one chunk's (or the whole run's) score rows into the reference bins."""
        self._add("scores", scores)

    def _add(self, kind: str, frame: pd.DataFrame) -> None:
        for column, hist in self._histograms[kind].items():
            if column not in frame.columns:
                continue
            counts = hist.counts(frame[column])
            seen = self._counts[kind].get(column)
            self._counts[kind][column] = counts if seen is None else seen + counts

    def report(self) -> dict[str, Any]:
        """PSI of every column measured, the flagged ones (worst first), and the threshold."""
        if self.reference is None:
            return {
                "measured": False,
                "note": "the champion carries no reference distribution: retrain it to measure",
                "flagged": [],
            }
        out: dict[str, Any] = {
            "measured": True,
            "threshold": self.threshold,
            "reference_as_of": self.reference.get("as_of"),
        }
        flagged: list[str] = []
        for kind in ("features", "scores"):
            values = {
                column: round(psi(self._histograms[kind][column].shares, counts), 4)
                for column, counts in self._counts[kind].items()
            }
            out[f"{kind}_psi"] = dict(sorted(values.items(), key=lambda kv: -_finite(kv[1])))
            flagged += [f"{column}" for column, v in values.items() if _finite(v) > self.threshold]
            out[f"{kind}_not_measured"] = sorted(set(self._histograms[kind]) - set(values))
        every = {**out["features_psi"], **out["scores_psi"]}
        out["flagged"] = sorted(flagged, key=lambda c: -_finite(every[c]))
        out["max_psi"] = max((_finite(v) for v in every.values()), default=0.0)
        return out


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def log_run(summary: Mapping[str, Any], tracking_uri: str, run_name: str) -> str:
    """Log a scoring run to the `vafa-scoring` experiment; returns the MLflow run id.

    Only aggregate figures: counts, score quantiles, PSI per column, flags. No customer data.
    """
    import mlflow
    from training.registry import configure_tracking

    experiment = configure_tracking(tracking_uri, SCORING_EXPERIMENT)
    drift = summary.get("drift", {})
    metrics: dict[str, float] = {
        "customers": float(summary["customers"]),
        "customer_equity": float(summary["customer_equity"]),
        "value_at_risk": float(summary["value_at_risk"]),
        "mean_churn_probability": float(summary["mean_churn_probability"]),
        "with_action": float(summary["with_action"]),
        "stale_flags": float(len(summary.get("freshness", {}).get("flags", []))),
        "drift_flags": float(len(drift.get("flagged", []))),
    }
    equity_range = summary.get("customer_equity_interval") or {}
    for end in ("low", "high"):
        if equity_range.get(end) is not None:
            metrics[f"customer_equity_{end}"] = float(equity_range[end])
    changes = summary.get("changes", {})
    for key in ("changed_actions", "new_customers", "dropped_customers"):
        if changes.get(key) is not None:
            metrics[key] = float(changes[key])
    for column, quantiles in summary.get("score_distributions", {}).items():
        for q, value in quantiles.items():
            metrics[f"{column}_{q}"] = float(value)
    if drift.get("measured"):
        metrics["max_psi"] = float(drift["max_psi"])
        for kind in ("features", "scores"):
            for column, value in drift[f"{kind}_psi"].items():
                if math.isfinite(value):
                    metrics[f"psi_{kind}_{_metric_name(column)}"] = float(value)
    for name, seconds in summary.get("timings_seconds", {}).items():
        metrics[name] = float(seconds)
    with mlflow.start_run(experiment_id=experiment, run_name=run_name) as run:
        mlflow.log_params(
            {
                "as_of": summary["as_of"],
                "model_versions": ",".join(summary["model_versions"]),
                "engine": summary.get("engine", "local"),
                "chunks": summary.get("chunks", 1),
            }
        )
        mlflow.log_metrics(metrics)
        mlflow.set_tags(
            {
                "drift_flagged": str(bool(drift.get("flagged"))).lower(),
                "stale_data": str(bool(summary.get("freshness", {}).get("flags"))).lower(),
            }
        )
        mlflow.log_dict(dict(summary), "summary.json")
        return str(run.info.run_id)


def _metric_name(column: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces; event names may not."""
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in column)
