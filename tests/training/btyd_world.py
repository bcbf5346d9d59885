"""A small CDNOW-like world: one cohort acquired in a quarter, buying as BG/NBD says, seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.schema import Tables

START = pd.Timestamp("2024-01-01")


def cohort_tables(
    customers: int = 3000, days: int = 545, seed: int = 0, acquisition_days: int = 90
) -> Tables:
    """Transactions of a cohort first buying in `acquisition_days`, followed for `days`.

    Purchase rates are Gamma(0.25, 1/38) per day and each purchase ends the customer with a
    Beta(0.6, 2.3) probability (CDNOW's BG/NBD fit); values are Gamma around 35.
    """
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.25, 1 / 38.0, customers)
    drop = rng.beta(0.6, 2.3, customers)
    scale = rng.gamma(6.0, 35.0 / 6.0, customers)
    rows: list[tuple[str, float, float]] = []
    for i in range(customers):
        t = float(rng.uniform(0, acquisition_days))
        while t < days:
            rows.append((f"C{i:05d}", t, float(rng.gamma(4.0, scale[i] / 4.0))))
            t += float(rng.exponential(1 / max(rate[i], 1e-9)))
            if t < days and rng.random() < drop[i]:
                break  # drops out after this repeat purchase
    frame = pd.DataFrame(rows, columns=["customer_id", "day", "amount"])
    ts = START + pd.to_timedelta(np.floor(frame["day"]), unit="D")
    transactions = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype("str"),
            "ts": ts.astype("datetime64[us]"),
            "amount": frame["amount"].round(2).astype("float64"),
        }
    )
    return Tables(transactions=transactions.sort_values("ts", ignore_index=True))
