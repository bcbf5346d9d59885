"""Profile features: who the customer is (segment, acquisition channel, region, signup age)."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from features.rfm import ID, days_before

PROFILE_CATEGORIES = ("segment", "acquisition_channel", "region")


def profile_features(customers: pl.DataFrame, as_of: datetime) -> pl.LazyFrame:
    """One row per customer from the customers table.

    Profiles carry no history, so attributes are taken as they are; a signup at or after
    `as_of` is treated as unknown rather than read from the future.

    Output columns:
        segment, acquisition_channel, region: the profile attributes present in the table.
        signup_days: days from signup to `as_of` (null when unknown or not yet happened).
    """
    columns = [c for c in PROFILE_CATEGORIES if c in customers.columns]
    exprs: list[pl.Expr] = [pl.col(c) for c in columns]
    if "signup_ts" in customers.columns:
        exprs.append(
            pl.when(pl.col("signup_ts") < as_of)
            .then(days_before(as_of, "signup_ts"))
            .alias("signup_days")
        )
    # A duplicated profile keeps its first row: validation reports duplicates.
    return customers.lazy().unique(subset=ID, keep="first", maintain_order=True).select(ID, *exprs)
