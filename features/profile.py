"""Profile features: who the customer is (segment, acquisition channel, region, signup age)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np

from features.columns import ColumnData
from features.rfm import (
    ID,
    Codes,
    Columns,
    arrow,
    days_before,
    group_min,
    labels,
    micros,
    timestamps_us,
)

PROFILE_CATEGORIES = ("segment", "acquisition_channel", "region")


def profile_features(customers: ColumnData, codes: Mapping[str, Codes], as_of: datetime) -> Columns:
    """One value per customer code from the customers table (missing for codes without a row).

    Profiles carry no history, so attributes are taken as they are; a signup at or after
    `as_of` is treated as unknown rather than read from the future.

    Args:
        customers: the validated customers table.
        codes: its customer_id as integer codes (rows with -1 are left out; the names are
            the customers, one per code).
        as_of: the cutoff.

    Output columns:
        segment, acquisition_channel, region: the profile attributes present in the table.
        signup_days: days from signup to `as_of` (NaN when unknown or not yet happened).
    """
    n, customer, rows = len(codes[ID]), codes[ID].codes, len(customers[ID])
    known = np.flatnonzero(customer >= 0)
    # A duplicated profile keeps its first row: validation reports duplicates.
    first = group_min(customer[known], n, known, rows)
    has = first < rows
    first = first[has]
    row = np.full(n, -1)
    row[has] = first
    columns: Columns = {
        name: labels(arrow(customers[name]), row)
        for name in PROFILE_CATEGORIES
        if name in customers
    }
    if "signup_ts" in customers:
        as_of_us = micros(as_of)
        signup = timestamps_us(customers["signup_ts"])[first]
        days = np.full(n, np.nan)
        # NaT is the smallest int64: exclude it explicitly, it is not a signup before as_of.
        before = (signup < as_of_us) & (signup != np.iinfo(np.int64).min)
        days[np.flatnonzero(has)[before]] = days_before(as_of_us, signup[before])
        columns["signup_days"] = days
    return columns
