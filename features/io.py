"""The data-folder edge: read and validate the contract tables; write frames atomically."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.coercion import coerce_table
from features.consistency import future_issues, report_event_collisions, report_id_types
from features.files import is_number, read_table
from features.schema import ID, TABLE_SPECS, Tables, future_from
from features.validation import (
    DataValidationError,
    Problem,
    RawTable,
    RowIssue,
    ValidationReport,
    check_rows,
    quarantine_frame,
    report_cross_table,
    warn_rows,
)

TableFormat = Literal["parquet", "csv"]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""How a CSV text cell a spreadsheet would run as a formula starts (OWASP, "CSV injection")."""


@dataclass(frozen=True)
class LoadResult:
    """The loaded tables and the report of what was found on the way."""

    tables: Tables
    report: ValidationReport


def load_tables(data_dir: Path | str, *, quarantine_dir: Path | str | None = None) -> LoadResult:
    """Load and validate a data folder: the one place where input is read and coerced.

    Each table is `NAME.parquet` or `NAME.csv` (both present is an error: ambiguous).
    `transactions` is required, `customers`, `events` and `subscriptions` optional. Only
    contract columns are kept, in contract order (extra columns are listed as info). Ids and
    labels become pandas `str` (whitespace stripped, empty = missing), timestamps naive UTC
    `datetime64[us]`, numbers float64, flags pandas `boolean` (CSV: true/false, 1/0, yes/no).
    CSV is read as text first so that a bad value is reported, never silently NaN.

    Every violation is collected, not just the first. Decisions beyond the contract:
    exact duplicate rows are kept (two identical purchase lines can be legitimate) and
    counted as a warning; negative amounts are refunds (valid); naive timestamps are UTC and
    zoned ones are converted to UTC, mixed in one column is fine; customers that appear only in
    `customers`, `events` or `subscriptions` are valid and counted as info (they are not
    scored); a subscription term ending at or before its start, with notice after its end, or
    overlapping another term of the customer's same plan is a bad row; unknown event
    names are valid (info; names match exactly, case included, after stripping whitespace); a
    NaN number is missing, +-inf is an error; a survey event
    (`SURVEY_RANGES`) needs a score within its range; a customer_id repeated in `customers`
    is an error; CSV lines whose fields are all empty (blank lines) are skipped and counted as
    info, while a line with content only outside the contract columns is a bad row.

    Beyond single values: an empty transactions table is an error (nobody to score); timestamps
    outside 1900-2261, numbers beyond +-`MAX_ABS_NUMBER` and customer ids longer than
    `MAX_ID_LENGTH` or holding a NUL are bad rows; rows dated after tomorrow (UTC, by the clock;
    a term's scheduled `end_ts` may be later) are flagged as warnings and kept (no as-of without
    `--allow-future-as-of` reads them), or set aside under quarantine; event names that become
    the same feature columns, and customer ids typed as numbers in one file but spelled
    otherwise as text in another, are errors (`features.consistency`).

    Args:
        data_dir: the data folder.
        quarantine_dir: when given, rows with row-level problems (and rows dated after
            tomorrow) are written with their raw values, source row and problem to
            `quarantine_dir/NAME.csv` (only for tables with such rows), left out of the loaded
            tables and reported as warnings. Missing tables and columns, unreadable files and
            disagreements between files are never quarantined.

    Returns:
        The tables and the report.

    Raises:
        DataValidationError: the folder breaks the contract (and no quarantine absorbed it).
        ValueError: `quarantine_dir` is the data folder itself.
    """
    tables, report = _load(Path(data_dir), None if quarantine_dir is None else Path(quarantine_dir))
    if tables is None:
        raise DataValidationError(report)
    return LoadResult(tables, report)


def validate_folder(data_dir: Path | str) -> ValidationReport:
    """Check a data folder against the contract without raising for bad data.

    Args:
        data_dir: the data folder.

    Returns:
        The report; `report.ok` is False when `load_tables` would raise.
    """
    return _load(Path(data_dir), None)[1]


def write_text(text: str, path: Path | str) -> Path:
    """Write a text file atomically, as `write_frame` writes frames: aside, then renamed."""
    return _write_atomic(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """`write` a temporary file in the target's folder, sync it, then rename it over `path`.

    Same folder, so the rename is atomic; a fresh name, so writers never collide. A reader (or
    a crash) never sees a half-written file, and an existing target survives a failed write.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_frame(df: pd.DataFrame, path: Path | str, *, escape_formulas: bool = True) -> Path:
    """Write a frame as Parquet or CSV by the file's extension, atomically.

    The frame goes to a temporary file in the target folder first and replaces the target only
    once complete, so a reader (or a crash) never sees a half-written file and an existing
    target survives a failed write. A named index is written as column(s); an unnamed one is not.
    CSV timestamps are ISO 8601, as short as loses nothing (`2024-05-01`, `2024-05-01T13:45:00`,
    with a `Z` suffix for zoned columns, converted to UTC); missing values are empty. CSV text
    cells starting with `=`, `+`, `-`, `@`, a tab or a carriage return get a leading `'`, so
    that a spreadsheet shows them rather than running them as formulas (`=HYPERLINK(...)` in a
    customer id); Parquet keeps every value as it is.

    Args:
        df: the frame; not modified.
        path: target file ending in `.parquet` or `.csv`; parent folders are created.
        escape_formulas: escape formula-like CSV text cells (False for files Vafa reads back,
            such as a data folder's tables, whose values must round-trip).

    Returns:
        The path written.

    Raises:
        ValueError: the extension is neither `.parquet` nor `.csv`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"cannot write {path}: the file name must end in .parquet or .csv")
    if any(name is not None for name in df.index.names):
        df = df.reset_index()

    def write(tmp: Path) -> None:
        if suffix == ".parquet":
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
        else:
            ready = _csv_ready(df, escape_formulas=escape_formulas)
            pacsv.write_csv(pa.Table.from_pandas(ready, preserve_index=False), tmp)

    return _write_atomic(path, write)


def write_tables(
    tables: Tables, out_dir: Path | str, fmt: TableFormat = "parquet"
) -> dict[str, Path]:
    """Write the present tables as `out_dir/NAME.parquet` or `NAME.csv`, each atomically.

    Afterwards `out_dir` holds exactly these tables: any other contract-table file left from an
    earlier run (the other format, or a table absent from `tables`) is removed, since
    `load_tables` would read it as part of the folder.

    Args:
        tables: the tables to write.
        out_dir: the data folder to write; created if needed.
        fmt: "parquet" or "csv".

    Returns:
        The path written per table name.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"unknown table format {fmt!r}: use 'parquet' or 'csv'")
    out = Path(out_dir)
    other = "csv" if fmt == "parquet" else "parquet"
    written: dict[str, Path] = {}
    for name in TABLE_SPECS:
        frame = getattr(tables, name)
        if frame is not None:
            # A data folder is read back by Vafa: its values are written as they are.
            written[name] = write_frame(frame, out / f"{name}.{fmt}", escape_formulas=False)
        else:
            (out / f"{name}.{fmt}").unlink(missing_ok=True)
        (out / f"{name}.{other}").unlink(missing_ok=True)
    return written


# --- loading -----------------------------------------------------------------------------------


def _load(data_dir: Path, quarantine_dir: Path | None) -> tuple[Tables | None, ValidationReport]:
    report = ValidationReport(data_dir=str(data_dir))
    if quarantine_dir is not None and quarantine_dir.resolve() == data_dir.resolve():
        raise ValueError(
            "the quarantine folder must not be the data folder: it would be overwritten"
        )
    if not data_dir.is_dir():
        report.add(Problem("error", f"data folder not found: {data_dir}"))
        return None, report

    frames: dict[str, pd.DataFrame] = {}
    numeric_ids: dict[str, bool] = {}
    first_rows: dict[str, int] = {}
    since = future_from()
    pending: list[tuple[str, RawTable, list[RowIssue], list[RowIssue], np.ndarray]] = []
    for name, spec in TABLE_SPECS.items():
        raw = read_table(spec, data_dir, report)
        if raw is None:
            continue
        report.sources[name] = str(raw.path)
        frame, issues, blank = coerce_table(spec, raw)
        report.row_counts[name] = int(len(frame) - blank.sum())
        if not report.row_counts[name]:
            # Nothing to score without transactions: an empty feed is not a quiet success.
            report.add(
                Problem(
                    "error" if spec.required else "warning",
                    "the table has no rows",
                    table=name,
                    path=str(raw.path),
                )
            )
        frames[name] = frame
        first_rows[name] = raw.first_row
        if ID in raw.data.column_names:
            numeric_ids[name] = is_number(raw.data[ID].type)
        future = future_issues(spec, frame, since)
        if not any(issue.mask.any() for issue in [*issues, *future]):
            # Raw values are only read to show and quarantine bad rows: with none, free them
            # now rather than hold every table twice (a large table takes gigabytes).
            raw = replace(raw, data=raw.data.slice(0, 0))
        pending.append((name, raw, issues, future, blank))
    # Disagreements between files, found while every row still has its number.
    report_id_types(frames, numeric_ids, report.sources, first_rows, report)
    if "events" in frames:
        report_event_collisions(
            frames["events"], report.sources["events"], first_rows["events"], report
        )

    # Row problems are only quarantinable when the folder is otherwise loadable.
    can_quarantine = quarantine_dir is not None and not report.errors
    while pending:
        # Popped so that each raw table is freed once done: a large table takes gigabytes.
        name, raw, issues, future, blank = pending.pop(0)
        if can_quarantine:
            issues = [*issues, *future]
        else:
            warn_rows(name, raw, future, blank, report)
        frames[name], bad = check_rows(
            name, raw, frames[name], issues, blank, report, quarantined=can_quarantine
        )
        if can_quarantine and quarantine_dir is not None and bad.any():
            target = quarantine_dir / f"{name}.csv"
            write_frame(quarantine_frame(raw, issues, bad), target)
            report.quarantined[name] = int(bad.sum())
            report.quarantine_files[name] = str(target)
    if report.quarantined.get("transactions") and frames["transactions"].empty:
        report.add(
            Problem(
                "error",
                "every row was set aside in quarantine: no transaction left to score",
                table="transactions",
                path=report.sources["transactions"],
            )
        )

    report_cross_table(frames, report)
    if report.errors:
        return None, report
    tables = Tables(
        transactions=frames["transactions"],
        customers=frames.get("customers"),
        events=frames.get("events"),
        subscriptions=frames.get("subscriptions"),
        sources=dict(report.sources),
    )
    return tables, report


def _csv_ready(df: pd.DataFrame, *, escape_formulas: bool) -> pd.DataFrame:
    """The frame with timestamp columns as ISO 8601 text, and formula-like text escaped."""
    out = {}
    for name, series in df.items():
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            text = _iso(series.dt.tz_convert("UTC").dt.tz_localize(None))
            out[name] = text.where(text.isna(), text + "Z")
        elif pd.api.types.is_datetime64_dtype(series.dtype):
            out[name] = _iso(series)
        elif escape_formulas and _is_text(series):
            out[name] = _escape_formulas(series)
        else:
            out[name] = series
    return pd.DataFrame(out, index=df.index, copy=False)


def _is_text(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return pd.api.types.is_string_dtype(dtype.categories.dtype)
    return pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)


def _escape_formulas(series: pd.Series) -> pd.Series:
    """Text cells a spreadsheet would run as formulas, prefixed with `'`; others unchanged."""
    is_text = series.map(lambda value: isinstance(value, str), na_action="ignore")
    is_text = is_text.fillna(False).astype(bool)
    if not is_text.any():
        return series
    text = series.astype(object).where(is_text, "").astype("str")  # categoricals too
    risky = (text.str.startswith(FORMULA_START) & is_text).to_numpy(dtype=bool)
    if not risky.any():
        return series
    escaped = series.astype(object).copy()
    escaped[risky] = "'" + text[risky]
    return escaped


def _iso(series: pd.Series) -> pd.Series:
    """ISO 8601 text at the coarsest unit that loses nothing; missing stays missing."""
    values = series.to_numpy()
    present = values[~np.isnat(values)]
    units: tuple[Literal["D", "s", "ms", "us", "ns"], ...] = ("D", "s", "ms", "us", "ns")
    unit = units[0]
    for candidate in units:
        unit = candidate
        if (present.astype(f"datetime64[{candidate}]") == present).all():
            break
    text = np.datetime_as_string(values, unit=unit)
    return pd.Series(text, index=series.index, dtype="str").where(~np.isnat(values))
