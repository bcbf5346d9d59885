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
    REASON_BOOL,
    REASON_CANCEL_AFTER_END,
    REASON_DUPLICATE_ID,
    REASON_END_NOT_AFTER_START,
    REASON_ID_LENGTH,
    REASON_ID_NUL,
    REASON_MISSING,
    REASON_MISSING_ID,
    REASON_NON_FINITE,
    REASON_NUMBER,
    REASON_NUMBER_RANGE,
    REASON_OVERLAP,
    REASON_SURVEY_MISSING,
    REASON_TIMESTAMP,
    REASON_TIMESTAMP_RANGE,
    REASON_WHOLE,
    RawTable,
    RowIssue,
)


def coerce_table(spec: TableSpec, raw: RawTable) -> tuple[pd.DataFrame, list[RowIssue], np.ndarray]:
    """Coerce the raw columns to contract types and find the row-level problems.

    Ids and labels become pandas `str` (whitespace stripped, empty = missing), timestamps naive
    UTC `datetime64[us]`, numbers float64 (whole numbers too), flags pandas `boolean`; a value
    that does not parse is a row problem, never a silent NaN. So are a timestamp outside
    [EARLIEST, LATEST), a number beyond +-MAX_ABS_NUMBER or the column's bounds, a fraction in
    a whole-number column, and a customer_id longer than MAX_ID_LENGTH or holding a NUL
    character. Subscription terms must end after they start, take notice no later than their
    end, and not overlap another term of the same customer and plan (`subscription_issues`).

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
    if spec.name == "subscriptions":
        issues.extend(subscription_issues(frame, issues))
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
    if column.kind == "bool":
        flags, missing, unparsable = _to_flags(data)
        if unparsable.any():
            issues.append((REASON_BOOL, unparsable))
        return pd.Series(flags, name=column.name, copy=False), missing, issues
    numbers, missing, unparsable = _to_numbers(data)
    if unparsable.any():
        issues.append((REASON_NUMBER, unparsable))
    infinite = np.isinf(numbers)
    if infinite.any():
        issues.append((REASON_NON_FINITE, infinite))
    huge = np.isfinite(numbers) & (np.abs(numbers) > MAX_ABS_NUMBER)
    if huge.any():
        issues.append((REASON_NUMBER_RANGE, huge))
    if column.kind == "int":
        fraction = np.isfinite(numbers) & (numbers != np.round(numbers))
        if fraction.any():
            issues.append((REASON_WHOLE, fraction))
    if column.min_value is not None:
        if column.min_exclusive:
            not_above = numbers <= column.min_value
            if not_above.any():
                issues.append((f"value not above {column.min_value:g}", not_above))
        else:
            below = numbers < column.min_value
            if below.any():
                issues.append((f"value below the minimum {column.min_value:g}", below))
    if column.max_value is not None:
        above = np.isfinite(numbers) & (numbers > column.max_value)
        if above.any():
            issues.append((f"value above the maximum {column.max_value:g}", above))
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


_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def _to_flags(
    data: pa.ChunkedArray,
) -> tuple[pd.api.extensions.ExtensionArray, np.ndarray, np.ndarray]:
    """Nullable booleans, the missing mask and the unparsable mask.

    Booleans are taken as they are, numbers only as 0 or 1, text (any case) only as true/false,
    1/0 or yes/no: a flag that reads as anything else is refused, never guessed.
    """
    kind = data.type
    n = len(data)
    if pa.types.is_boolean(kind):
        missing = _np_mask(pc.is_null(data))
        true = _np_mask(data)
        unparsable = np.zeros(n, dtype=bool)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        numbers = data.cast(pa.float64(), safe=False).to_numpy()
        missing = np.isnan(numbers)
        true = numbers == 1
        unparsable = ~missing & ~true & (numbers != 0)
    else:
        text, missing = _clean_text(data)
        lower = pc.utf8_lower(text)
        true = _np_mask(pc.is_in(lower, pa.array(_TRUE)))
        false = _np_mask(pc.is_in(lower, pa.array(_FALSE)))
        unparsable = ~missing & ~true & ~false
    flags = pd.array(true, dtype="boolean")
    flags[missing | unparsable] = pd.NA
    return flags, missing, unparsable


def subscription_issues(frame: pd.DataFrame, issues: list[RowIssue]) -> list[RowIssue]:
    """Terms that cannot be: ending before they start, notice after the end, overlapping terms.

    Two terms of one customer and one plan (rows without a plan, or a table without the column,
    form one plan per customer) overlap when each starts before the other ends; a term ending
    as the next starts is a renewal. Both terms of an overlap are named. Rows already refused
    for their ids or dates are left out of the comparison.

    Args:
        frame: the coerced subscriptions table, every row.
        issues: its problems found so far.
    """
    if "start_ts" not in frame or "end_ts" not in frame:
        return []
    found: list[RowIssue] = []
    start, end = frame["start_ts"].to_numpy(), frame["end_ts"].to_numpy()
    dated = ~np.isnat(start) & ~np.isnat(end)
    backwards = dated & (end <= start)
    if backwards.any():
        found.append(RowIssue("end_ts", REASON_END_NOT_AFTER_START, backwards))
    if "cancel_ts" in frame:
        cancel = frame["cancel_ts"].to_numpy()
        late = ~np.isnat(cancel) & ~np.isnat(end) & (cancel > end)
        if late.any():
            found.append(RowIssue("cancel_ts", REASON_CANCEL_AFTER_END, late))
    refused = np.zeros(len(frame), dtype=bool)
    for issue in [*issues, *found]:
        if issue.column in ("customer_id", "start_ts", "end_ts"):
            refused |= issue.mask
    overlapping = _overlaps(frame, dated & ~refused)
    if overlapping.any():
        found.append(RowIssue("start_ts", REASON_OVERLAP, overlapping))
    return found


def _overlaps(frame: pd.DataFrame, usable: np.ndarray) -> np.ndarray:
    """Rows whose term overlaps another usable term of the same customer and plan."""
    rows = np.flatnonzero(usable)
    hit = np.zeros(len(frame), dtype=bool)
    if len(rows) < 2:
        return hit
    # Codes of the whole column (Arrow-backed text factorizes natively), then the usable rows.
    customer = frame["customer_id"].factorize()[0][rows].astype(np.int64)
    if "plan" in frame:
        plan_codes, plans = frame["plan"].factorize()  # a missing plan: -1, a plan of its own
        group = customer * (len(plans) + 1) + plan_codes[rows] + 1
    else:
        group = customer
    start = frame["start_ts"].to_numpy()[rows].astype(np.int64)
    end = frame["end_ts"].to_numpy()[rows].astype(np.int64)
    order = np.lexsort((start, group))
    group, start, end = group[order], start[order], end[order]
    group_start = np.ones(len(order), dtype=bool)
    group_start[1:] = group[1:] != group[:-1]
    group = np.cumsum(group_start) - 1
    # The latest end of the earlier terms of the group: a term starting before it overlaps one.
    earlier_end = np.full(len(order), np.iinfo(np.int64).min)
    running = pd.Series(end).groupby(group).cummax().to_numpy()
    earlier_end[1:] = np.where(group_start[1:], earlier_end[1:], running[:-1])
    later = start < earlier_end
    # Sorted by start, the next term of the group starts first of the later ones.
    earlier = np.zeros(len(order), dtype=bool)
    earlier[:-1] = ~group_start[1:] & (start[1:] < end[:-1])
    overlapped = later | earlier
    hit[rows[order[overlapped]]] = True
    return hit


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
