"""Feature and score columns by name, from a DataFrame or a dict of arrays: one reader for both.

The nightly batch holds a million customers in a DataFrame; an online request holds one
customer in a dict of numpy arrays, where each pandas call (tens of microseconds) would cost
more than the arithmetic. Code that reads columns only through `name in data`, `data[name]`
and these functions runs the same lines on both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd


class ColumnData(Protocol):
    """What the scoring code reads: a pandas DataFrame, or a dict of equal-length arrays."""

    def __getitem__(self, name: str, /) -> Any: ...

    def __contains__(self, name: object, /) -> bool: ...


class TableData(Protocol):
    """The tables features read: `Tables` of DataFrames, or `/score`'s dicts of arrays.

    A request's few rows go to the feature code as numpy (numbers, datetime64[us]) and Arrow
    (text) arrays: making DataFrames of them cost more than building the features.
    """

    @property
    def transactions(self) -> ColumnData:
        """Always there."""

    @property
    def events(self) -> ColumnData | None:
        """None: no events table (not the same as one without rows)."""

    @property
    def customers(self) -> ColumnData | None:
        """None: no profiles table."""


def floats(values: Any) -> np.ndarray:
    """A numeric column (Series or array) as float64 numpy: a view when it already is."""
    return np.asarray(values, dtype=np.float64)


def numbers(data: ColumnData, name: str, n: int) -> np.ndarray:
    """The column as float64, NaN where missing; all NaN when absent or not numeric.

    Not a copy when the column already is float64 numpy: callers must not write to it.
    """
    if name not in data:
        return np.full(n, np.nan)
    values = data[name]
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values
    if not pd.api.types.is_numeric_dtype(values.dtype):
        return np.full(n, np.nan)
    if isinstance(values, np.ndarray):
        return values.astype(np.float64)
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def categorical(values: Any) -> pd.Categorical | None:
    """The pandas Categorical behind a column (a Series or the array itself), else None."""
    if isinstance(values, pd.Series):
        values = values.array
    return values if isinstance(values, pd.Categorical) else None


def as_frame(data: ColumnData) -> pd.DataFrame:
    """A DataFrame of the columns (the data itself when it is one)."""
    return data if isinstance(data, pd.DataFrame) else pd.DataFrame(data, copy=False)


def row_count(data: ColumnData, n: int | None) -> int:
    """`n`, or the rows of a DataFrame (a dict of columns does not know its rows: pass `n`)."""
    if n is not None:
        return n
    if isinstance(data, pd.DataFrame):
        return len(data)
    raise TypeError("the number of rows is needed with a dict of columns")


def text_arrays(columns: Mapping[str, Any]) -> dict[str, Any]:
    """Object arrays (text) as pandas `str` arrays, the dtype of text in frames; others as is."""
    return {
        name: pd.array(values, dtype="str")
        if isinstance(values, np.ndarray) and values.dtype == object
        else values
        for name, values in columns.items()
    }
