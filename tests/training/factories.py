"""The training tests' shared date and options (the fixtures built from them: conftest.py)."""

from __future__ import annotations

import pandas as pd

from training.train import TrainOptions

AS_OF = pd.Timestamp("2026-11-01")
OPTIONS = TrainOptions(trials=2, seed=3, n_snapshots=3, spacing_days=45)
