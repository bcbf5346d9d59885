"""Small builders of frames with the dtypes loaded tables have."""

from __future__ import annotations

import pandas as pd


def ts(*values: str) -> pd.Series:
    """Naive UTC timestamps as loaded tables hold them."""
    return pd.Series(pd.to_datetime(list(values), format="ISO8601")).astype("datetime64[us]")


def frame(**columns: object) -> pd.DataFrame:
    """A frame with contract dtypes: strings as `str`, floats as float64."""
    df = pd.DataFrame(columns)
    for name in df.columns:
        if df[name].dtype == object:
            df[name] = df[name].astype("str")
    return df
