"""How to train: windows, economics, tuning budget and seed (one home for the defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from training.sampling import MAX_TRAIN_ROWS


@dataclass(frozen=True)
class TrainOptions:
    """How to train: windows, economics, tuning budget and seed."""

    churn_window_days: int = 90
    horizon_days: int = 365
    margin_rate: float = 0.3
    annual_discount_rate: float = 0.0
    trials: int = 12
    timeout_seconds: float | None = None
    seed: int = 42
    n_snapshots: int = 6
    spacing_days: int = 30
    btyd_features: bool = False  # measured: no out-of-time gain on the generated data
    num_threads: int = 2
    # Above this many rows a training split keeps a share of its customers (training.sampling).
    max_train_rows: int | None = MAX_TRAIN_ROWS
    # The best rung of the ladder to use (training.datasets.RUNGS): lower ones are graded
    # side by side by a backtest.
    highest_rung: str = "out_of_time"
    # What churn means (features.labels.CHURN_DEFINITIONS); "auto": contractual when the data
    # has a subscriptions table, else inactivity.
    churn_definition: str = "auto"
