"""How far the BTYD base's spend level misses by season, and how much last year's level recovers.

Usage: `.venv/bin/python -m benchmarks.seasons [--customers 20000] [--horizon 90] [--seed 11]`
from the repository root.

On a generated shop (three years to 2026-11-01, a December peak and a July low), for every
month start from `--first` to `--last`: the BG/NBD + Gamma-Gamma base fitted as of that day
(the level the spend model keeps, `training.correction.level_shift`), its total spend over
the horizon against what followed, and the same with `training.seasons.last_year_level`
applied (the base's ratio of actual to forecast in the same window a year earlier). Prints
each month and the root mean square of the log errors without and with the seasonal level.
The training run also checks the level on its validation snapshot before using it; this
benchmark shows the estimator alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if not __package__:
    sys.path[0] = str(REPO)  # run as a script: import from the repository root


def main() -> None:
    """Print the monthly errors and their root mean square."""
    import numpy as np
    import pandas as pd

    from features.build import build_features
    from features.labels import build_labels
    from features.synthetic import generate_tables
    from training.btyd.base import BtydBase
    from training.seasons import last_year_level

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--horizon", type=int, default=90)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--first", default="2025-04-01")
    parser.add_argument("--last", default="2026-07-01")
    args = parser.parse_args()

    started = time.perf_counter()
    tables = generate_tables(args.customers, seed=args.seed)
    print(f"{args.customers:,} generated customers, {args.horizon}-day horizon, seed {args.seed}")
    print(f"{'as of':>10}  {'base error':>10}  {'last year':>9}  {'with it':>8}")
    without, with_level = [], []
    for as_of in pd.date_range(args.first, args.last, freq="MS"):
        features = build_features(tables, as_of)
        base = BtydBase.fit(features, "bgnbd")
        forecast = float(np.exp(base.spend_margin(features, args.horizon)).sum())
        future = build_labels(tables, as_of, None, args.horizon).set_index("customer_id")
        actual = float(future["future_spend"].reindex(features["customer_id"]).fillna(0).sum())
        level = last_year_level(tables, as_of, args.horizon, "bgnbd")
        seasonal = forecast * (level or 1.0)
        without.append(np.log(forecast / actual))
        with_level.append(np.log(seasonal / actual))
        shown = "none" if level is None else f"{level:.3f}"
        print(
            f"{as_of.date()!s:>10}  {forecast / actual - 1:>+10.1%}  {shown:>9}  "
            f"{seasonal / actual - 1:>+8.1%}"
        )
    rms = [float(np.sqrt(np.mean(np.square(e)))) for e in (without, with_level)]
    print(
        f"root mean square log error: base alone {rms[0]:.3f}, with last year's level {rms[1]:.3f}"
    )
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
