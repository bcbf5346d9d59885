"""Coercion of a raw table to contract types, finding the row problems on the way; pure.

`features.io` coerces every table it reads with `coerce_table`, and the Spark engine every bucket
it decodes, so that both load a value, or reject it, the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import (
    EARLIEST,
    LATEST,
    MAX_ABS_NUMBER,
    MAX_ID_LENGTH,
    SURVEY_RANGES,
    Column,
    TableSpec,
)
from features.validation import (
    REASON_DUPLICATE_ID,
    REASON_ID_LENGTH,
    REASON_ID_NUL,
    REASON_MISSING,
    REASON_MISSING_ID,
    REASON_NON_FINITE,
    REASON_NUMBER,
    REASON_NUMBER_RANGE,
    REASON_SURVEY_MISSING,
    REASON_TIMESTAMP,
    REASON_TIMESTAMP_RANGE,
    RawTable,
    RowIssue,
)


def coerce_table(spec: TableSpec, raw: RawTable) -> tuple[pd.DataFrame, list[RowIssue], np.ndarray]:
    """Coerce the raw columns to contract types and find the row-level problems.

    Ids and labels become pandas `str` (whitespace stripped, empty = missing), timestamps naive
    UTC `datetime64[us]`, numbers float64; a value that does not parse is a row problem, never a
    silent NaN. So are a timestamp outside [EARLIEST, LATEST), a number beyond
    +-MAX_ABS_NUMBER, and a customer_id longer than MAX_ID_LENGTH or holding a NUL character.

    Args:
        spec: the contract table.
        raw: the table as read; `first_row` 2 marks text input, whose all-empty rows are blank
            lines (unless `raw.filled_elsewhere` says the line holds other columns' content).

    Returns:
        The coerced frame (all rows, contract columns present in the source), the row issues,
        and the mask of blank CSV lines.
    """
    n = raw.data.num_rows
    columns: dict[str, pd.Series] = {}
    missing: dict[str, np.ndarray] = {}
    issues: list[RowIssue] = []
    blank = np.zeros(n, dtype=bool)
    if raw.first_row == 2 and raw.data.num_columns:
        blank = np.ones(n, dtype=bool)
        for name in raw.data.column_names:
            blank &= _np_mask(pc.equal(raw.data[name], ""))
        if raw.filled_elsewhere is not None:
            blank &= ~raw.filled_elsewhere
    for name in raw.data.column_names:
        column = spec.column(name)
        values, is_missing, col_issues = _coerce_column(raw.data[name], column)
        columns[name], missing[name] = values, is_missing
        if column.required and is_missing.any():
            reason = REASON_MISSING_ID if column.kind == "id" else REASON_MISSING
            issues.append(RowIssue(name, reason, is_missing))
        issues.extend(RowIssue(name, reason, mask) for reason, mask in col_issues)
    frame = pd.DataFrame(columns, copy=False) if columns else pd.DataFrame(index=range(n))
    if spec.name == "events" and "event" in columns:
        issues.extend(_survey_issues(frame, missing.get("value")))
    if spec.name == "customers" and "customer_id" in columns:
        repeated = frame["customer_id"].duplicated(keep=False).to_numpy() & ~missing["customer_id"]
        if repeated.any():
            issues.append(RowIssue("customer_id", REASON_DUPLICATE_ID, repeated))
    return frame, issues, blank


def _coerce_column(
    data: pa.ChunkedArray, column: Column
) -> tuple[pd.Series, np.ndarray, list[tuple[str, np.ndarray]]]:
    """Coerce one column; returns the values, the missing mask and (reason, mask) problems."""
    issues: list[tuple[str, np.ndarray]] = []
    if column.kind in ("id", "string"):
        text, missing = _clean_text(data)
        if column.kind == "id":
            issues.extend(_id_issues(text))
        return text.to_pandas().astype("str"), missing, issues
    if column.kind == "timestamp":
        values, missing, unparsable = _to_timestamps(data)
        if unparsable.any():
            issues.append((REASON_TIMESTAMP, unparsable))
        stamps = values.to_numpy()
        outside = ~np.isnat(stamps) & (
            (stamps < EARLIEST.to_datetime64()) | (stamps >= LATEST.to_datetime64())
        )
        if outside.any():
            issues.append((REASON_TIMESTAMP_RANGE, outside))
        return values, missing, issues
    numbers, missing, unparsable = _to_numbers(data)
    if unparsable.any():
        issues.append((REASON_NUMBER, unparsable))
    infinite = np.isinf(numbers)
    if infinite.any():
        issues.append((REASON_NON_FINITE, infinite))
    huge = np.isfinite(numbers) & (np.abs(numbers) > MAX_ABS_NUMBER)
    if huge.any():
        issues.append((REASON_NUMBER_RANGE, huge))
    if column.min_value is not None:
        below = numbers < column.min_value
        if below.any():
            issues.append((f"value below the minimum {column.min_value:g}", below))
    return pd.Series(numbers, name=column.name, copy=False), missing, issues


def _clean_text(data: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Text with surrounding whitespace stripped and empty strings as nulls, plus the null mask."""
    if pa.types.is_dictionary(data.type):
        data = data.cast(data.type.value_type)
    if not pa.types.is_large_string(data.type):
        data = data.cast(pa.large_string())
    text = pc.utf8_trim_whitespace(data)
    empty = pc.equal(text, "")
    if pc.any(empty).as_py():
        text = pc.if_else(empty, pa.scalar(None, pa.large_string()), text)
    return text, _np_mask(pc.is_null(text))


def _id_issues(text: pa.ChunkedArray) -> list[tuple[str, np.ndarray]]:
    """Ids the scores store cannot hold: too long for its key column, or holding a NUL."""
    issues: list[tuple[str, np.ndarray]] = []
    too_long = _np_mask(pc.greater(pc.utf8_length(text), MAX_ID_LENGTH))
    if too_long.any():
        issues.append((REASON_ID_LENGTH, too_long))
    nul = _np_mask(pc.match_substring(text, "\x00"))
    if nul.any():
        issues.append((REASON_ID_NUL, nul))
    return issues


def _to_timestamps(data: pa.ChunkedArray) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Naive UTC datetime64[us] values, the missing mask and the unparsable mask."""
    kind = data.type
    n = len(data)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            # Arrow stores zoned timestamps as UTC instants: dropping the zone keeps UTC.
            data = data.cast(pa.timestamp(kind.unit))
        # safe=False: sub-microsecond digits are truncated rather than an error.
        values = data.cast(pa.timestamp("us"), safe=False)
        missing = _np_mask(pc.is_null(values))
        return _timestamp_series(values.to_pandas()), missing, np.zeros(n, dtype=bool)
    text, missing = _clean_text(data)
    for target in (pa.timestamp("us"), pa.timestamp("us", tz="UTC")):
        # Fast path: a column that is all naive or all zoned parses in Arrow.
        try:
            parsed = pc.cast(text, target)
        except pa.ArrowInvalid:
            continue
        return (
            _timestamp_series(parsed.cast(pa.timestamp("us")).to_pandas()),
            missing,
            np.zeros(n, dtype=bool),
        )
    # Mixed offsets, odd ISO forms or bad values: pandas parses each value on its own.
    parsed_pd = pd.to_datetime(text.to_pandas(), format="ISO8601", utc=True, errors="coerce")
    values_pd = _timestamp_series(parsed_pd.dt.tz_localize(None))
    unparsable = values_pd.isna().to_numpy() & ~missing
    return values_pd, missing, unparsable


def _timestamp_series(values: pd.Series) -> pd.Series:
    return values.astype("datetime64[us]")


def _to_numbers(data: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 values (NaN where missing or bad), the missing mask and the unparsable mask."""
    kind = data.type
    n = len(data)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        numbers = data.cast(pa.float64(), safe=False).to_numpy()
        # A NaN is a missing value, as pandas would write it.
        return numbers, np.isnan(numbers), np.zeros(n, dtype=bool)
    text, missing = _clean_text(data)
    try:
        numbers = pc.cast(text, pa.float64()).to_numpy()
        return numbers, missing | np.isnan(numbers), np.zeros(n, dtype=bool)
    except pa.ArrowInvalid:
        pass
    series = text.to_pandas()
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    failed = np.isnan(numbers) & ~missing
    # Text spelling NaN parses to NaN: it is missing, not unparsable.
    nan_text = np.zeros(n, dtype=bool)
    if failed.any():
        idx = np.flatnonzero(failed)
        spelled = series.iloc[idx].str.lower().str.lstrip("+-") == "nan"
        nan_text[idx[spelled.to_numpy()]] = True
    return numbers, missing | nan_text, failed & ~nan_text


def _survey_issues(frame: pd.DataFrame, value_missing: np.ndarray | None) -> list[RowIssue]:
    """Survey events need a score within the range of their scale."""
    issues: list[RowIssue] = []
    event = frame["event"]
    value = frame["value"].to_numpy() if "value" in frame else np.full(len(frame), np.nan)
    absent = value_missing if value_missing is not None else np.ones(len(frame), dtype=bool)
    for name, (low, high) in SURVEY_RANGES.items():
        is_survey = (event == name).to_numpy(dtype=bool, na_value=False)
        if not is_survey.any():
            continue
        no_score = is_survey & absent
        if no_score.any():
            issues.append(RowIssue("value", f"{REASON_SURVEY_MISSING} for '{name}'", no_score))
        # Non-finite values are already reported as such.
        outside = is_survey & np.isfinite(value) & ((value < low) | (value > high))
        if outside.any():
            issues.append(RowIssue("value", f"'{name}' score outside {low:g}-{high:g}", outside))
    return issues


def _np_mask(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean numpy mask, null as False."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)
