"""The data-folder edge: read and validate the contract tables; write frames atomically."""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.coercion import coerce_table
from features.consistency import future_issues, report_event_collisions, report_id_types
from features.schema import ID, TABLE_SPECS, Tables, TableSpec, future_from
from features.validation import (
    MAX_SHOWN,
    DataValidationError,
    Problem,
    RawTable,
    RowIssue,
    ValidationReport,
    check_rows,
    quarantine_frame,
    report_cross_table,
    show_value,
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
    `transactions` is required, `customers` and `events` optional. Only contract columns are
    kept, in contract order (extra columns are listed as info). Ids and labels become pandas
    `str` (whitespace stripped, empty = missing), timestamps naive UTC `datetime64[us]`, numbers
    float64. CSV is read as text first so that a bad value is reported, never silently NaN.

    Every violation is collected, not just the first. Decisions beyond the contract:
    exact duplicate rows are kept (two identical purchase lines can be legitimate) and
    counted as a warning; negative amounts are refunds (valid); naive timestamps are UTC and
    zoned ones are converted to UTC, mixed in one column is fine; customers that appear only in
    `customers` or `events` are valid and counted as info (they are not scored); unknown event
    names are valid (info; names match exactly, case included, after stripping whitespace); a
    NaN number is missing, +-inf is an error; a survey event
    (`SURVEY_RANGES`) needs a score within its range; a customer_id repeated in `customers`
    is an error; CSV lines whose fields are all empty (blank lines) are skipped and counted as
    info, while a line with content only outside the contract columns is a bad row.

    Beyond single values: an empty transactions table is an error (nobody to score); timestamps
    outside 1900-2261, numbers beyond +-`MAX_ABS_NUMBER` and customer ids longer than
    `MAX_ID_LENGTH` or holding a NUL are bad rows; rows dated after tomorrow (UTC, by the clock)
    are flagged as warnings and kept (no as-of without `--allow-future-as-of` reads them), or set
    aside under quarantine; event names that become the same feature columns, and customer ids
    typed as numbers in one file but spelled otherwise as text in another, are errors
    (`features.consistency`).

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
        raw = _read_table(spec, data_dir, report)
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
            numeric_ids[name] = _is_number(raw.data[ID].type)
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
        sources=dict(report.sources),
    )
    return tables, report


def _read_table(spec: TableSpec, data_dir: Path, report: ValidationReport) -> RawTable | None:
    """Find and read one table file, or report why it cannot be; keeps only contract columns."""
    parquet, csv_path = data_dir / f"{spec.name}.parquet", data_dir / f"{spec.name}.csv"
    if parquet.exists() and csv_path.exists():
        report.add(
            Problem(
                "error",
                f"both {parquet.name} and {csv_path.name} exist: keep only one",
                table=spec.name,
                path=str(data_dir),
            )
        )
        return None
    if not parquet.exists() and not csv_path.exists():
        if spec.required:
            report.add(
                Problem(
                    "error",
                    f"missing required table '{spec.name}' "
                    f"(expected {parquet.name} or {csv_path.name}{_found_instead(data_dir, spec)})",
                    table=spec.name,
                    path=str(data_dir),
                )
            )
        else:
            report.add(Problem("info", "optional table absent", table=spec.name))
        return None
    path = parquet if parquet.exists() else csv_path
    try:
        header = _parquet_columns(path) if path == parquet else _csv_header(path)
    except (OSError, pa.ArrowException, UnicodeDecodeError, csv.Error) as exc:
        report.add(Problem("error", _read_error(exc), table=spec.name, path=str(path)))
        return None
    duplicated = sorted({c for c in spec.column_names if header.count(c) > 1})
    if duplicated:
        report.add(
            Problem(
                "error",
                f"duplicate column names: {', '.join(duplicated)}",
                table=spec.name,
                path=str(path),
            )
        )
        return None
    present = [c for c in spec.column_names if c in header]
    delimiter = _other_delimiter(header) if path == csv_path else None
    for column in spec.columns:
        if column.required and column.name not in header:
            hint = [c for c in header if c.lower() == column.name.lower()]
            report.add(
                Problem(
                    "error",
                    "missing required column"
                    + (f" (found {hint[0]!r}: names are case-sensitive)" if hint else "")
                    + (
                        f" (the header seems separated by {delimiter!r}: a CSV table is "
                        "comma-separated)"
                        if delimiter
                        else ""
                    ),
                    table=spec.name,
                    path=str(path),
                    column=column.name,
                )
            )
    extra = [c for c in header if c not in spec.column_names]
    if extra:
        report.add(
            Problem(
                "info",
                f"extra columns ignored: {', '.join(c or '(unnamed)' for c in extra)}",
                table=spec.name,
                path=str(path),
            )
        )
    if not present:
        return None  # no contract column: the missing ones are reported, nothing to read
    try:
        if path == parquet:
            data = pq.read_table(path, columns=present)
            return RawTable(path, data, first_row=1)
        read = _read_csv_text(path, header, present, report, spec.name)
    except (OSError, pa.ArrowException) as exc:
        report.add(Problem("error", _read_error(exc), table=spec.name, path=str(path)))
        return None
    if read is None:
        return None
    data, filled_elsewhere = read
    return RawTable(path, data, first_row=2, filled_elsewhere=filled_elsewhere)


def _found_instead(data_dir: Path, spec: TableSpec) -> str:
    others = sorted(p.name for p in data_dir.glob(f"{spec.name}.*"))
    return f"; found {', '.join(others)}: only .parquet and .csv are read" if others else ""


def _parquet_columns(path: Path) -> list[str]:
    return list(pq.read_schema(path).names)


def _is_number(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    )


def _other_delimiter(header: list[str]) -> str | None:
    """The separator a one-column header seems to use instead of commas (`;`, tab or `|`)."""
    if len(header) != 1:
        return None
    return next((d for d in (";", "\t", "|") if d in header[0]), None)


def _read_error(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError) or "invalid UTF8" in str(exc):
        return 'the file is not UTF-8 text: save it as UTF-8 ("CSV UTF-8" in spreadsheets)'
    return f"cannot read the file: {exc}"


def _csv_header(path: Path) -> list[str]:
    with path.open("rb") as handle:
        first_line = handle.readline().decode("utf-8-sig")
    header = next(csv.reader([first_line]), None)
    if not header:
        raise OSError("the file is empty: a CSV table needs a header row")
    # Stray spaces after the commas of a hand-written header are common and unambiguous.
    return [name.strip() for name in header]


def _read_csv_text(
    path: Path, header: list[str], present: list[str], report: ValidationReport, table: str
) -> tuple[pa.Table, np.ndarray | None] | None:
    """Read the contract columns of a CSV file as text, keeping one row per line.

    Blank lines are kept as rows (of empty strings) so that row i is always line i + 2, which
    the problem reports rely on; they are dropped after validation. A line whose contract fields
    are all empty but which holds content in another column is not blank: the returned mask
    (None when no such line can exist) marks it.
    """
    read = pacsv.ReadOptions(column_names=header, skip_rows=1)
    convert = _text_columns(present)
    try:
        data = pacsv.read_csv(path, read, pacsv.ParseOptions(ignore_empty_lines=False), convert)
    except pa.ArrowInvalid as exc:
        if "CSV parse error" not in str(exc):
            raise
    else:
        return data, _filled_elsewhere(path, header, present, data)
    # A malformed line: read again on one thread, where Arrow knows line numbers, to list them all.
    malformed: list[pacsv.InvalidRow] = []

    def collect(row: pacsv.InvalidRow) -> str:
        malformed.append(row)
        return "skip"

    pacsv.read_csv(
        path,
        pacsv.ReadOptions(column_names=header, skip_rows=1, use_threads=False),
        pacsv.ParseOptions(ignore_empty_lines=False, invalid_row_handler=collect),
        convert,
    )
    shown = malformed[:MAX_SHOWN]
    report.add(
        Problem(
            "error",
            f"malformed CSV lines (expected {len(header)} fields)",
            table=table,
            path=str(path),
            n_rows=len(malformed),
            rows=tuple(row.number or 0 for row in shown),
            samples=tuple(show_value(f"{row.actual_columns} fields: {row.text}") for row in shown),
        )
    )
    return None


def _text_columns(columns: list[str]) -> pacsv.ConvertOptions:
    """Arrow's options to read these columns as text, empty fields as empty strings."""
    return pacsv.ConvertOptions(
        include_columns=columns,
        column_types=dict.fromkeys(columns, pa.large_string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )


def _filled_elsewhere(
    path: Path, header: list[str], present: list[str], data: pa.Table
) -> np.ndarray | None:
    """Lines whose contract fields are all empty but another column is not; None if none.

    The other columns are read only when some line has empty contract fields, and only they.
    """
    # Positional names: extra columns may share a name (two unnamed ones, say).
    positions = [f"column {i}" for i in range(len(header))]
    others = [positions[i] for i, name in enumerate(header) if name not in present]
    if not others or not data.num_rows:
        return None
    empty = np.ones(data.num_rows, dtype=bool)
    for name in data.column_names:
        empty &= np.asarray(pc.equal(data[name], "").to_numpy(zero_copy_only=False), dtype=bool)
    if not empty.any():
        return None
    rest = pacsv.read_csv(
        path,
        pacsv.ReadOptions(column_names=positions, skip_rows=1),
        pacsv.ParseOptions(ignore_empty_lines=False),
        _text_columns(others),
    )
    filled = np.zeros(data.num_rows, dtype=bool)
    for name in rest.column_names:
        text = pc.utf8_trim_whitespace(rest[name])
        filled |= np.asarray(pc.not_equal(text, "").to_numpy(zero_copy_only=False), dtype=bool)
    filled &= empty
    return filled if filled.any() else None


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
    text = series.where(is_text, "").astype("str")
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
