"""Training rows at scale: a customer-hash share of the snapshots when they exceed a budget.

A million customers make millions of snapshot rows, more than the trees need and more than
memory holds. Above `MAX_TRAIN_ROWS` a training split keeps a share of its customers, all
of their snapshots, chosen by a seeded hash of the id (`features.labels.customer_draws`):

- a customer's snapshots stay together, so no customer is half in the sample;
- each cutoff and each class keeps its share of the population in expectation, so the
  class balance, the label level and the season mix the trees see are the population's:
  no weights are needed (every kept row stands for the same number of rows), and the
  calibration and levels fitted on the (whole) validation snapshot are not shifted;
- the choice does not depend on the labels, so it can be made before the features are
  built (`SnapshotSample.by_cutoff`), and it is the same in every run with the seed.

Validation snapshots are never sampled: the run's metrics are over every customer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.labels import customer_draws
from features.schema import ID, Tables

# Rows one training split learns from at most; see the module docstring.
MAX_TRAIN_ROWS = 500_000


def snapshot_rows(tables: Tables, cutoffs: Iterable[pd.Timestamp]) -> dict[pd.Timestamp, int]:
    """Rows of each cutoff's snapshot: the customers with a transaction before it."""
    tx = tables.transactions
    first = np.sort(tx.groupby(ID, observed=True)["ts"].min().dropna().to_numpy())
    return {c: int(np.searchsorted(first, c.to_datetime64(), side="left")) for c in cutoffs}


@dataclass(frozen=True)
class SnapshotSample:
    """Which share of its customers each training split keeps, and how to take it.

    Attributes:
        shares: per split name, the share of customers kept (1.0: every row).
        cutoffs: per split name, its snapshot dates.
        seed: seeds the customer draws.
    """

    shares: dict[str, float]
    cutoffs: dict[str, list[pd.Timestamp]]
    seed: int

    def by_cutoff(self, whole: Iterable[pd.Timestamp | None] = ()) -> dict[pd.Timestamp, float]:
        """The `sample` of `features.labels.build_training_set`: a share per cutoff.

        A cutoff in several splits keeps the largest of their shares (a smaller share's
        customers are among a larger one's), and the `whole` cutoffs (validation) keep
        everyone.
        """
        out: dict[pd.Timestamp, float] = {}
        for name, dates in self.cutoffs.items():
            for cutoff in dates:
                out[cutoff] = max(out.get(cutoff, 0.0), self.shares[name])
        for cutoff in whole:
            if cutoff is not None:
                out[cutoff] = 1.0
        return {c: share for c, share in out.items() if share < 1.0}

    def take(self, name: str, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of a split's frame whose customers are in its sample (all when share 1)."""
        share = self.shares[name]
        if share >= 1.0 or frame.empty:
            return frame
        kept = customer_draws(frame[ID], self.seed) < share
        return frame[kept].reset_index(drop=True)


def plan_sample(
    tables: Tables,
    splits: Mapping[str, Sequence[pd.Timestamp]],
    *,
    max_rows: int | None = MAX_TRAIN_ROWS,
    seed: int = 0,
) -> SnapshotSample:
    """The share of customers each training split keeps to stay within `max_rows` rows.

    Args:
        tables: the tables the snapshots are built from (rows before the training date).
        splits: per training split name, its snapshot dates.
        max_rows: the budget of rows per split; None keeps every row.
        seed: seeds the customer draws (the run's seed).

    Returns:
        The plan; a split within the budget keeps share 1.0 (every row).

    Raises:
        ValueError: `max_rows` is not positive.
    """
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be positive, got {max_rows}")
    dates = {name: sorted(set(cutoffs)) for name, cutoffs in splits.items()}
    counts = snapshot_rows(tables, {c for cutoffs in dates.values() for c in cutoffs})
    shares = {}
    for name, cutoffs in dates.items():
        rows = sum(counts[c] for c in cutoffs)
        shares[name] = 1.0 if max_rows is None or rows <= max_rows else max_rows / rows
    return SnapshotSample(shares=shares, cutoffs=dates, seed=seed)
