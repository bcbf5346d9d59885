"""How to train: windows, economics, tuning budget and seed (one home for the defaults)."""

from __future__ import annotations

from dataclasses import dataclass


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
