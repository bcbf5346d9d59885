"""Score rows as the store writes them: checked ids, JSON payloads, the driver's plain values."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import sqlalchemy as sa

from features.schema import MAX_ID_LENGTH
from serving.store.tables import store_scores

CHUNK_ROWS = 20_000
UNTYPED = frozenset({"run_id", "customer_id", "as_of", "model_version", "payload", "updated_at"})
TYPED = tuple(c.name for c in store_scores.columns if c.name not in UNTYPED)
"""The score columns the row table types, for a database user's filters: as the table says."""


def one_date(scores: pd.DataFrame) -> dt.date:
    """The one date a run's rows are scored as of.

    Raises:
        ValueError: no rows, or several dates.
    """
    if scores.empty:
        raise ValueError("no score rows: a run with no customers is not stored")
    dates = {pd.Timestamp(v).date() for v in scores["as_of"].unique()}
    if len(dates) != 1:
        raise ValueError(f"one run has one as_of; got {sorted(dates)}")
    return dates.pop()


def check_ids(ids: pd.Series) -> None:
    """Ids the store can hold, each once; the rows of the first offenders named."""
    text = ids.astype("string")
    problems = {
        "is missing": text.isna(),
        f"is longer than {MAX_ID_LENGTH} characters": text.str.len()
        .gt(MAX_ID_LENGTH)
        .fillna(False),
        "holds a NUL byte": text.str.contains("\x00", regex=False).fillna(False),
        "repeats an earlier row's": text.duplicated() & text.notna(),
    }
    for problem, mask in problems.items():
        rows = np.flatnonzero(mask.to_numpy(dtype=bool))
        if len(rows):
            shown = ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            raise ValueError(f"customer_id {problem} in {len(rows)} score rows (rows {shown})")


def driver_columns(
    scores: pd.DataFrame, run_id: int, run_date: dt.date, now: dt.datetime, dialect: sa.Dialect
) -> Iterator[dict[str, list[Any]]]:
    """The table's columns, in chunks of rows, as values the database driver takes.

    The payload is the score row as `json_rows` writes it (Polars: pandas' `to_json` took a
    third of a million-customer upsert).
    """
    payloads = json_rows(scores)
    constant: dict[str, Any] = {"as_of": run_date, "updated_at": now}
    for name, value in constant.items():
        process = store_scores.c[name].type.bind_processor(dialect)
        constant[name] = process(value) if process else value
    for start in range(0, len(scores), CHUNK_ROWS):
        part = scores.iloc[start : start + CHUNK_ROWS]
        n = len(part)
        columns: dict[str, list[Any]] = {
            "run_id": [run_id] * n,
            "customer_id": part["customer_id"].astype(str).tolist(),
            "as_of": [constant["as_of"]] * n,
        }
        for name in TYPED:
            columns[name] = _plain(part[name]) if name in part else [None] * n
        columns["model_version"] = part["model_version"].astype(str).tolist()
        columns["payload"] = payloads[start : start + CHUNK_ROWS]
        columns["updated_at"] = [constant["updated_at"]] * n
        yield columns


def json_rows(scores: pd.DataFrame) -> list[str]:
    """Each score row as a JSON object: dates as ISO text, NaN and infinities as null.

    The store's payload, so what `/lookup` returns; `score_records` gives `/score` the same
    values without Polars' fixed cost per call.
    """
    frame = pl.from_pandas(scores)
    frame = frame.with_columns(
        [
            pl.col(name).dt.strftime("%Y-%m-%dT%H:%M:%S%.3f")
            for name, dtype in frame.schema.items()
            if dtype.is_temporal()
        ]
        + [
            pl.when(pl.col(name).is_finite()).then(pl.col(name)).alias(name)
            for name, dtype in frame.schema.items()
            if dtype.is_float()
        ]
    )
    return frame.write_ndjson().splitlines()


def score_records(scores: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each score row as the dict `json_rows` encodes, for a few rows (an online request).

    Polars' fixed cost per call is milliseconds, the whole budget of a one-customer request;
    a test holds the two to the same values. Takes a frame or the scorer's dict of columns.
    """
    columns: dict[str, list[Any]] = {}
    for name, values in scores.items():
        dtype = values.dtype
        if pd.api.types.is_datetime64_any_dtype(dtype):
            stamps = np.asarray(values, dtype="datetime64[ms]")
            text = np.datetime_as_string(stamps, unit="ms").tolist()
            columns[name] = [None if t == "NaT" else t for t in text]
        elif pd.api.types.is_float_dtype(dtype):
            columns[name] = _plain(values)
        else:
            plain = np.asarray(values, dtype=object).tolist()
            columns[name] = [None if _missing(v) else v for v in plain]
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _missing(value: object) -> bool:
    """Null in a score row: None, pandas' missing markers, NaN and the infinities."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and not math.isfinite(value)


def _plain(column: Any) -> list[Any]:
    """Python values the driver takes: floats and text, None for NaN or a missing value."""
    if pd.api.types.is_float_dtype(column.dtype):
        values = np.asarray(column, dtype=np.float64)
        out: list[Any] = values.tolist()
        for at in np.flatnonzero(~np.isfinite(values)).tolist():
            out[at] = None
        return out
    return [None if _missing(v) else str(v) for v in column.astype(object).tolist()]
