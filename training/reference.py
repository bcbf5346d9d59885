"""Reference distributions saved with a model: per-column bins and shares, to measure drift by.

One place bins values: the reference is fitted here at training time, and nightly scoring counts
its customers into the very same bins (`Histogram.counts`), so the two are always comparable.
Numeric columns get quantile cut points of the reference, taken among observed values (ties
merged, so count-like features keep their few distinct values), categorical columns their levels
plus an "other" bin; every histogram ends with a bin for missing values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# Floor on a bin's share in PSI: an empty bin on either side would make the index infinite.
PSI_FLOOR = 1e-4
DEFAULT_BINS = 10


@dataclass(frozen=True)
class Histogram:
    """How one column's values fall into bins, and the reference's share of each bin.

    Attributes:
        edges: interior cut points of a numeric column (bin i holds edges[i-1] <= x < edges[i]);
            None for a categorical column.
        levels: the levels of a categorical column (a last bin holds any other level).
        shares: the reference's share of each bin, missing values last.
    """

    edges: list[float] | None
    levels: list[str] | None
    shares: list[float]

    @classmethod
    def fit(cls, values: pd.Series, bins: int = DEFAULT_BINS) -> Histogram:
        """Bins from the reference values (quantile cut points, or the levels seen)."""
        if isinstance(values.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(
            values.dtype
        ):
            levels = sorted(str(v) for v in values.dropna().unique())
            hist = cls(edges=None, levels=levels, shares=[])
        else:
            present = values.to_numpy(dtype=float, na_value=np.nan)
            present = present[np.isfinite(present)]
            inner = np.linspace(0, 1, bins + 1)[1:-1]
            # Observed values as cut points ("lower"): a count-like feature's bins are its values.
            edges = (
                np.unique(np.quantile(present, inner, method="lower"))
                if present.size
                else np.array([])
            )
            hist = cls(edges=edges.tolist(), levels=None, shares=[])
        counts = hist.counts(values)
        shares = counts / max(counts.sum(), 1)
        return cls(hist.edges, hist.levels, np.round(shares, 6).tolist())

    def counts(self, values: pd.Series) -> np.ndarray:
        """How many of `values` fall in each bin (missing last); add them up across chunks."""
        if self.levels is not None:
            text = values.astype("str").where(values.notna())
            codes = pd.Index(self.levels).get_indexer(text).astype(np.int64)  # -1: other
            bins = np.where(codes >= 0, codes, len(self.levels))
            bins[text.isna().to_numpy()] = len(self.levels) + 1
            return np.bincount(bins, minlength=len(self.levels) + 2)
        assert self.edges is not None
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(numbers)
        bins = np.searchsorted(np.asarray(self.edges), numbers, side="right")
        bins[missing] = len(self.edges) + 1
        return np.bincount(bins, minlength=len(self.edges) + 2)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"edges": self.edges, "levels": self.levels, "shares": self.shares}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        """The inverse of `to_dict`."""
        return cls(edges=data.get("edges"), levels=data.get("levels"), shares=data["shares"])


def psi(reference_shares: np.ndarray | list[float], counts: np.ndarray) -> float:
    """Population stability index of observed bin counts against the reference's shares.

    Sum over bins of (actual - expected) x ln(actual / expected), shares floored at
    `PSI_FLOOR`. Rules of thumb: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a
    significant one.
    """
    expected = np.maximum(np.asarray(reference_shares, dtype=float), PSI_FLOOR)
    total = counts.sum()
    if total == 0:
        return float("nan")
    actual = np.maximum(counts / total, PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def fit_reference(
    features: pd.DataFrame, scores: pd.DataFrame, as_of: pd.Timestamp, bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """The reference of a model: its features' and scores' histograms on one population.

    Args:
        features: feature rows (the population the model was trained for).
        scores: the model's outputs on those rows (churn probability, spend, CLV columns).
        as_of: the date the features are as of.
        bins: quantile bins per numeric column.

    Returns:
        A JSON-ready dict: as_of, customers, and a histogram per feature and per score column.
    """
    return {
        "as_of": str(pd.Timestamp(as_of).date()),
        "customers": len(features),
        "features": {
            c: Histogram.fit(features[c], bins).to_dict()
            for c in features.columns
            if c != "customer_id"
        },
        "scores": {
            c: Histogram.fit(scores[c], bins).to_dict()
            for c in scores.columns
            if c != "customer_id"
        },
    }
