"""Paired bootstrap of a backtest: the model minus each baseline, per metric, with 95% intervals.

The customers scored at T are resampled with replacement, one draw shared by the model and every
baseline, so each interval is of a difference on the same customers (paired), not of two separate
estimates; `training.resampled` computes the metrics of all the resamples at once. Intervals are
percentile intervals; a model "beats" a baseline on a metric when the interval excludes 0 on the
better side.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from features.io import write_frame, write_text
from training.resampled import METRICS_OF, FloatArray, bootstrap_metrics

MODEL = "model"
# Columns of a backtest's prediction frame that are not predictors.
NOT_PREDICTORS = ("customer_id", "actual", "active")
POPULATIONS = ("active", "all")

HIGHER_IS_BETTER = frozenset(
    {"roc_auc", "pr_auc", "top_decile_lift", "top_decile_capture", "spearman", "normalized_gini"}
)
LOWER_IS_BETTER = frozenset({"brier", "log_loss", "ece", "mae", "rmse", "decile_mape"})
# Signed errors: the one closer to zero is better, so their absolute values are compared.
CLOSER_TO_ZERO = frozenset({"total_error"})
CONFIDENCE = 0.95
WIN = "beats every baseline"
INTERVAL_COLUMNS = (
    "target",
    "population",
    "metric",
    "baseline",
    "customers",
    "model_value",
    "baseline_value",
    "difference",
    "low",
    "high",
    "outcome",
    "better",
)


def higher_is_better(metric: str) -> bool:
    """Whether a larger (for signed errors: a smaller absolute) value of `metric` is better.

    Raises:
        ValueError: the metric has no known direction (add it to the sets above).
    """
    if metric in HIGHER_IS_BETTER:
        return True
    if metric in LOWER_IS_BETTER or metric in CLOSER_TO_ZERO:
        return False
    raise ValueError(f"no direction is known for the metric {metric!r} (training.comparison)")


def compared_value(metric: str, values: ArrayLike) -> FloatArray:
    """What differences are taken of: the value, or its absolute value for a signed error."""
    array = np.asarray(values, dtype=np.float64)
    return np.abs(array) if metric in CLOSER_TO_ZERO else array


def _outcome(metric: str, low: float, high: float) -> str:
    """The outcome: better or worse (the interval excludes 0 on that side), tie, or undefined."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undefined"
    up = higher_is_better(metric)
    if (low > 0 and up) or (high < 0 and not up):
        return "better"
    if (high < 0 and up) or (low > 0 and not up):
        return "worse"
    return "tie"


def _check_finite(target: str, frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise naming the first column with a value that is not a finite number, and its rows.

    Raises:
        ValueError: naming the target, the column, how many rows and the first customer ids.
    """
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            who = frame.loc[bad, "customer_id"] if "customer_id" in frame else frame.index[bad]
            raise ValueError(
                f"{target} predictions, column {column!r}: {int(bad.sum())} rows are not finite "
                f"numbers (customers {', '.join(map(str, list(who)[:5]))})"
            )


def _seeded(seed: int, population: str, target: str) -> np.random.Generator:
    """A generator per population and target, so that one's draws do not depend on the others."""
    return np.random.default_rng([seed, zlib.crc32(f"{population}/{target}".encode())])


def paired_bootstrap(
    predictions: Mapping[str, pd.DataFrame],
    rows: Mapping[str, Sequence[str]],
    *,
    resamples: int = 1000,
    seed: int = 0,
    populations: Sequence[str] = ("active",),
) -> pd.DataFrame:
    """The model minus each baseline on every metric, with percentile bootstrap intervals.

    Args:
        predictions: per target ("churn", "spend"), one row per customer with `actual`,
            `active` (the decision population) and one column per predictor, `model` among
            them (`BacktestResult.predictions`).
        rows: per target, the metrics to compare (e.g. the backtest's CHURN_ROWS, SPEND_ROWS).
        resamples: bootstrap resamples of the customers.
        seed: the draws' seed.
        populations: "active" (the decision population) and/or "all" (every customer).

    Returns:
        One row per target, population, metric and baseline (INTERVAL_COLUMNS): the number of
        `customers`, the model's and the baseline's value on them, `difference` model minus
        baseline (for a signed error: |model| - |baseline|), the 95% interval `low`..`high`
        (percentiles of the resampled differences; resamples where a metric is undefined, such
        as a ROC-AUC without churners, are left out), `outcome` (better, worse, tie, or
        undefined where either value is) and `better` (the model is better and the interval
        excludes 0).

    Raises:
        ValueError: unknown target, population or metric direction, no `model` column, or a
            value that is not a finite number (naming the target, column and customers).
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    tail = 100 * (1 - CONFIDENCE) / 2
    records = []
    for population in populations:
        if population not in POPULATIONS:
            raise ValueError(f"population must be one of {POPULATIONS}, got {population!r}")
        for target, frame in predictions.items():
            if target not in METRICS_OF:
                raise ValueError(f"no metrics for the target {target!r}: {tuple(METRICS_OF)}")
            names = [c for c in frame.columns if c not in NOT_PREDICTORS]
            if MODEL not in names:
                raise ValueError(f"the {target} predictions have no {MODEL!r} column: {names}")
            _check_finite(target, frame, ["actual", *names])
            metrics = list(rows[target])
            for metric in metrics:
                higher_is_better(metric)
            mask = (
                frame["active"].to_numpy(dtype=bool)
                if population == "active"
                else np.ones(len(frame), dtype=bool)
            )
            y = frame["actual"].to_numpy(dtype=np.float64)[mask]
            preds = {name: frame[name].to_numpy(dtype=np.float64)[mask] for name in names}
            nan = dict.fromkeys(metrics, np.nan)
            point = {n: METRICS_OF[target](y, p) if y.size else nan for n, p in preds.items()}
            drawn = (
                bootstrap_metrics(
                    target, y, preds, metrics, resamples, _seeded(seed, population, target)
                )
                if y.size
                else {n: {m: np.full(resamples, np.nan) for m in metrics} for n in preds}
            )
            for metric in metrics:
                ours = compared_value(metric, drawn[MODEL][metric])
                for baseline in names:
                    if baseline == MODEL:
                        continue
                    gaps = ours - compared_value(metric, drawn[baseline][metric])
                    finite = gaps[np.isfinite(gaps)]
                    low, high = (
                        np.percentile(finite, [tail, 100 - tail]) if finite.size else (np.nan,) * 2
                    )
                    model_value, baseline_value = point[MODEL][metric], point[baseline][metric]
                    defined = np.isfinite(model_value) and np.isfinite(baseline_value)
                    outcome = _outcome(metric, float(low), float(high)) if defined else "undefined"
                    records.append(
                        {
                            "target": target,
                            "population": population,
                            "metric": metric,
                            "baseline": baseline,
                            "customers": int(y.size),
                            "model_value": float(model_value),
                            "baseline_value": float(baseline_value),
                            "difference": float(
                                compared_value(metric, model_value)
                                - compared_value(metric, baseline_value)
                            ),
                            "low": float(low),
                            "high": float(high),
                            "outcome": outcome,
                            "better": outcome == "better",
                        }
                    )
    return pd.DataFrame.from_records(records, columns=list(INTERVAL_COLUMNS))


def verdicts(intervals: pd.DataFrame) -> pd.DataFrame:
    """Per target, population and metric: whether the model beats every baseline, and the rest.

    Args:
        intervals: what `paired_bootstrap` returns.

    Returns:
        Columns target, population, metric, verdict ("beats every baseline", "ties", "loses" or
        "undefined") and detail: the baselines it loses to or ties with, each with both values, the
        difference and its interval; for a win, the narrowest margin. A baseline on which the
        metric is undefined (a constant prediction has no Spearman correlation) is named in the
        detail and neither wins nor ties.
    """
    records = []
    for (target, population, metric), rows in intervals.groupby(
        ["target", "population", "metric"], sort=False
    ):
        by = {
            kind: rows[rows["outcome"] == kind] for kind in ("better", "worse", "tie", "undefined")
        }
        if len(by["worse"]):
            verdict = "loses"
            detail = "; ".join(
                [f"to {_versus(row)}" for row in by["worse"].itertuples()]
                + [f"ties with {_versus(row)}" for row in by["tie"].itertuples()]
            )
        elif len(by["tie"]):
            verdict = "ties"
            detail = "; ".join(f"with {_versus(row)}" for row in by["tie"].itertuples())
        elif len(by["better"]):
            verdict = WIN
            margin = by["better"].assign(gap=lambda f: np.minimum(f["low"].abs(), f["high"].abs()))
            detail = f"narrowest over {_versus(next(margin.nsmallest(1, 'gap').itertuples()))}"
        else:
            verdict, detail = "undefined", "on these customers"
        if len(by["undefined"]) and verdict != "undefined":
            detail += "; undefined against " + ", ".join(by["undefined"]["baseline"])
        records.append(
            {
                "target": target,
                "population": population,
                "metric": metric,
                "verdict": verdict,
                "detail": detail,
            }
        )
    return pd.DataFrame.from_records(
        records, columns=["target", "population", "metric", "verdict", "detail"]
    )


def _versus(row: Any) -> str:
    """`baseline: model vs baseline, difference d (95% low to high)` of one interval row."""
    return (
        f"{row.baseline}: {row.model_value:.4g} vs {row.baseline_value:.4g}, "
        f"difference {row.difference:+.4g} (95% {row.low:+.4g} to {row.high:+.4g})"
    )


def render(
    intervals: pd.DataFrame, resamples: int, populations: Sequence[str] = ("active",)
) -> str:
    """The intervals as text tables, one per target and population, each with its verdicts.

    Each table has a row per metric and baseline; under it, the metrics on which the model beats
    every baseline, then each other metric with the baselines it loses to or ties with.
    """
    parts = []
    for population in populations:
        for target, rows in intervals[intervals["population"] == population].groupby(
            "target", sort=False
        ):
            who = "active customers" if population == "active" else "customers (all)"
            first = ~rows["metric"].duplicated()
            table = pd.DataFrame(
                {
                    "metric": rows["metric"].where(first, ""),
                    "model": rows["model_value"].map("{:.4f}".format).where(first, ""),
                    "baseline": rows["baseline"],
                    "baseline value": rows["baseline_value"].map("{:.4f}".format),
                    "difference": rows["difference"].map("{:+.4f}".format),
                    "95% interval": [
                        f"[{low:+.4f}, {high:+.4f}]"
                        for low, high in zip(rows["low"], rows["high"], strict=True)
                    ],
                    "outcome": rows["outcome"],
                }
            )
            judged = verdicts(rows)
            won = judged["verdict"] == WIN
            lines = [f"  {WIN} on: {', '.join(judged[won]['metric'])}"] if won.any() else []
            lines += [
                f"  {row.metric} {row.verdict} {row.detail}" for row in judged[~won].itertuples()
            ]
            parts.append(
                f"{target}: model - baseline on {int(rows['customers'].iloc[0]):,} {who}, "
                f"{resamples:,} paired bootstrap resamples (total_error: |model| - |baseline|)\n"
                f"{table.to_string(index=False)}\n" + "\n".join(lines)
            )
    return "\n\n".join(parts)


OUT_SUFFIXES = (".json", ".csv", ".parquet")
NUMBER_COLUMNS = ("model_value", "baseline_value", "difference", "low", "high")


def write_comparison(
    intervals: pd.DataFrame, path: Path | str, context: Mapping[str, object]
) -> Path:
    """Write the intervals and verdicts atomically: JSON (with `context`), CSV or Parquet.

    JSON holds `context` (e.g. the date and windows), `confidence`, `intervals` and `verdicts`
    (undefined numbers as null); CSV and Parquet hold the interval rows, each with its metric's
    verdict and detail.

    Raises:
        ValueError: the file name ends in none of OUT_SUFFIXES.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUT_SUFFIXES:
        raise ValueError(
            f"cannot write {path}: the file name must end in {', '.join(OUT_SUFFIXES)}"
        )
    judged = verdicts(intervals)
    if suffix != ".json":
        keys = ["target", "population", "metric"]
        return write_frame(intervals.merge(judged, on=keys, how="left"), path)
    document = dict(context) | {
        "confidence": CONFIDENCE,
        "intervals": _records(intervals),
        "verdicts": _records(judged),
    }
    return write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", path)


def read_comparison(text: str) -> tuple[pd.DataFrame, dict[str, object]]:
    """The intervals and the context of what `write_comparison` wrote as JSON."""
    document = json.loads(text)
    intervals = pd.DataFrame.from_records(
        document.pop("intervals"), columns=list(INTERVAL_COLUMNS)
    ).astype({name: "float64" for name in NUMBER_COLUMNS})
    document.pop("verdicts", None)
    return intervals, document


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Rows as dicts of plain Python values, NaN as None (JSON has no NaN)."""
    return [
        {
            key: (None if isinstance(value, float) and math.isnan(value) else value)
            for key, value in row.items()
        }
        for row in frame.astype(object).to_dict(orient="records")
    ]
