"""The data-folder edge: read, coerce and validate the contract tables; write frames atomically."""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.schema import KNOWN_EVENTS, SURVEY_RANGES, TABLE_SPECS, Column, Tables, TableSpec

Severity = Literal["error", "warning", "info"]
TableFormat = Literal["parquet", "csv"]

# How many offending rows a problem shows; the rest are counted.
MAX_SHOWN = 5
_MAX_SAMPLE_CHARS = 40

REASON_MISSING = "missing value"
REASON_MISSING_ID = "missing customer_id"
REASON_TIMESTAMP = (
    "unparsable timestamp (expected ISO 8601, e.g. 2024-05-01 or 2024-05-01T13:45:00Z)"
)
REASON_NUMBER = "unparsable number"
REASON_NON_FINITE = "non-finite number"
REASON_SURVEY_MISSING = "missing survey score"
REASON_DUPLICATE_ID = "duplicate customer_id (the table holds one row per customer)"


@dataclass(frozen=True)
class Problem:
    """One finding about a data folder: what, where, and on which rows.

    Attributes:
        severity: "error" (the folder cannot be loaded as is), "warning" or "info".
        message: what is wrong, e.g. "unparsable number".
        table: contract table name, when the finding concerns one.
        path: the file the finding concerns.
        column: the column the finding concerns.
        n_rows: how many rows are affected (0 for table- and column-level findings).
        rows: the first few affected rows as a user sees them: for CSV the line number in the
            file (the header is line 1), for Parquet the 1-based data row.
        samples: the raw values of `column` on those rows, as text.
        quarantined: the affected rows were set aside in the quarantine folder.
    """

    severity: Severity
    message: str
    table: str | None = None
    path: str | None = None
    column: str | None = None
    n_rows: int = 0
    rows: tuple[int, ...] = ()
    samples: tuple[str, ...] = ()
    quarantined: bool = False

    @property
    def row_label(self) -> str:
        """How `rows` count: "line" for CSV files, "row" otherwise."""
        return "line" if self.path is not None and self.path.endswith(".csv") else "row"

    def render(self) -> str:
        """One human-readable line naming the file, column, row count and first rows."""
        where = [self.path or self.table or ""]
        if self.column is not None:
            where.append(f"column '{self.column}'")
        location = ", ".join(w for w in where if w)
        text = f"{location}: {self.message}" if location else self.message
        if self.n_rows:
            text += f"; {_plural(self.n_rows, 'row')}"
        if self.rows:
            shown = [
                f"{self.row_label} {row}" + (f" {sample}" if sample else "")
                for row, sample in zip(
                    self.rows, self.samples or ("",) * len(self.rows), strict=True
                )
            ]
            more = ", ..." if self.n_rows > len(self.rows) else ""
            text += ": " + ", ".join(shown) + more
        if self.quarantined:
            text += " [set aside in quarantine]"
        return text


@dataclass
class ValidationReport:
    """Everything found while loading a data folder.

    Attributes:
        data_dir: the folder that was read.
        errors: findings that stop the load (empty when the load succeeded).
        warnings: findings worth a look that do not stop the load, including the row problems
            whose rows were quarantined.
        infos: neutral facts (absent optional tables, ignored columns, unscored customers...).
        sources: the file each table was read from.
        row_counts: data rows read per table (blank CSV lines not counted).
        quarantined: rows set aside per table (only tables with any).
        quarantine_files: the quarantine file written per table.
    """

    data_dir: str
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    infos: list[Problem] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    quarantine_files: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the folder loaded (possibly after quarantining rows)."""
        return not self.errors

    def add(self, problem: Problem) -> None:
        """File a problem under errors, warnings or infos by its severity."""
        {"error": self.errors, "warning": self.warnings, "info": self.infos}[
            problem.severity
        ].append(problem)

    def render(self) -> str:
        """A multi-line human-readable summary, errors first."""
        status = "INVALID" if self.errors else "OK"
        lines = [
            f"Data folder {self.data_dir}: {status} "
            f"({_plural(len(self.errors), 'error')}, {_plural(len(self.warnings), 'warning')})"
        ]
        for name in TABLE_SPECS:
            if name in self.row_counts:
                kept = self.row_counts[name] - self.quarantined.get(name, 0)
                line = f"  {name}: {_plural(kept, 'row')} from {self.sources[name]}"
                if name in self.quarantined:
                    line += (
                        f" ({self.quarantined[name]:,} rows quarantined to "
                        f"{self.quarantine_files[name]})"
                    )
                lines.append(line)
        for title, problems in (
            ("Errors", self.errors),
            ("Warnings", self.warnings),
            ("Info", self.infos),
        ):
            if problems:
                lines.append(f"{title}:")
                lines.extend(f"  - {p.render()}" for p in problems)
        return "\n".join(lines)


class DataValidationError(ValueError):
    """A data folder breaks the contract; `str()` is the full human-readable report.

    Attributes:
        report: the full report (errors, warnings, infos, counts).
        problems: the errors, as structured `Problem`s.
    """

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.render())
        self.report = report
        self.problems = list(report.errors)


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
    is an error; CSV lines whose contract fields are all empty (blank lines) are skipped and
    counted as info.

    Args:
        data_dir: the data folder.
        quarantine_dir: when given, rows with row-level problems are written with their raw
            values, source row and problem to `quarantine_dir/NAME.csv` (only for tables with
            such rows), left out of the loaded tables and reported as warnings. Missing tables
            and columns, and unreadable files, are never quarantined.

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


def write_frame(df: pd.DataFrame, path: Path | str) -> Path:
    """Write a frame as Parquet or CSV by the file's extension, atomically.

    The frame goes to a temporary file in the target folder first and replaces the target only
    once complete, so a reader (or a crash) never sees a half-written file and an existing
    target survives a failed write. A named index is written as column(s); an unnamed one is not.
    CSV timestamps are ISO 8601, as short as loses nothing (`2024-05-01`, `2024-05-01T13:45:00`,
    with a `Z` suffix for zoned columns, converted to UTC); missing values are empty.

    Args:
        df: the frame; not modified.
        path: target file ending in `.parquet` or `.csv`; parent folders are created.

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
            pacsv.write_csv(pa.Table.from_pandas(_csv_ready(df), preserve_index=False), tmp)

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
            written[name] = write_frame(frame, out / f"{name}.{fmt}")
        else:
            (out / f"{name}.{fmt}").unlink(missing_ok=True)
        (out / f"{name}.{other}").unlink(missing_ok=True)
    return written


# --- loading -----------------------------------------------------------------------------------


@dataclass
class _RawTable:
    """One table file as read, before coercion."""

    path: Path
    data: pa.Table
    first_row: int  # the user-visible number of data row 0: 2 for CSV (after the header), else 1


@dataclass
class _RowIssue:
    column: str
    reason: str
    mask: np.ndarray


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
    pending: list[tuple[str, _RawTable, list[_RowIssue], np.ndarray]] = []
    for name, spec in TABLE_SPECS.items():
        raw = _read_table(spec, data_dir, report)
        if raw is None:
            continue
        report.sources[name] = str(raw.path)
        frame, issues, blank = _coerce(spec, raw)
        report.row_counts[name] = int(len(frame) - blank.sum())
        if not report.row_counts[name]:
            report.add(Problem("warning", "the table has no rows", table=name, path=str(raw.path)))
        frames[name] = frame
        if not any(issue.mask.any() for issue in issues):
            # Raw values are only read to show and quarantine bad rows: with none, free them
            # now rather than hold every table twice (20M rows take gigabytes).
            raw = replace(raw, data=raw.data.slice(0, 0))
        pending.append((name, raw, issues, blank))

    # Row problems are only quarantinable when the folder is otherwise loadable.
    can_quarantine = quarantine_dir is not None and not report.errors
    while pending:
        # Popped so that each raw table is freed once done: 20M rows take gigabytes.
        name, raw, issues, blank = pending.pop(0)
        bad = _report_rows(name, raw, issues, blank, report, quarantined=can_quarantine)
        if can_quarantine and quarantine_dir is not None and bad.any():
            target = quarantine_dir / f"{name}.csv"
            write_frame(_quarantine_frame(raw, issues, bad), target)
            report.quarantined[name] = int(bad.sum())
            report.quarantine_files[name] = str(target)
        keep = ~(bad | blank)
        if not keep.all():
            frames[name] = frames[name].loc[keep].reset_index(drop=True)
        _warn_duplicates(name, str(raw.path), raw.first_row, keep, frames[name], report)

    _cross_table_infos(frames, report)
    if report.errors:
        return None, report
    tables = Tables(
        transactions=frames["transactions"],
        customers=frames.get("customers"),
        events=frames.get("events"),
        sources=dict(report.sources),
    )
    return tables, report


def _report_rows(
    name: str,
    raw: _RawTable,
    issues: list[_RowIssue],
    blank: np.ndarray,
    report: ValidationReport,
    *,
    quarantined: bool,
) -> np.ndarray:
    """Turn row issues into problems with row numbers and samples; returns the bad-row mask."""
    path = str(raw.path)
    bad = np.zeros(len(blank), dtype=bool)
    for issue in issues:
        mask = issue.mask & ~blank
        n_bad = int(mask.sum())
        if not n_bad:
            continue
        bad |= mask
        idx = np.flatnonzero(mask)[:MAX_SHOWN]
        report.add(
            Problem(
                "warning" if quarantined else "error",
                issue.reason,
                table=name,
                path=path,
                column=issue.column,
                n_rows=n_bad,
                rows=tuple(int(i) + raw.first_row for i in idx),
                samples=_samples(raw.data, issue.column, idx),
                quarantined=quarantined,
            )
        )
    if blank.any():
        idx = np.flatnonzero(blank)
        report.add(
            Problem(
                "info",
                "blank lines skipped",
                table=name,
                path=path,
                n_rows=len(idx),
                rows=tuple(int(i) + raw.first_row for i in idx[:MAX_SHOWN]),
            )
        )
    return bad


def _read_table(spec: TableSpec, data_dir: Path, report: ValidationReport) -> _RawTable | None:
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
    for column in spec.columns:
        if column.required and column.name not in header:
            hint = [c for c in header if c.lower() == column.name.lower()]
            report.add(
                Problem(
                    "error",
                    "missing required column"
                    + (f" (found {hint[0]!r}: names are case-sensitive)" if hint else ""),
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
    try:
        if path == parquet:
            data = pq.read_table(path, columns=present)
            return _RawTable(path, data, first_row=1)
        data = _read_csv_text(path, header, present, report, spec.name)
    except (OSError, pa.ArrowException) as exc:
        report.add(Problem("error", _read_error(exc), table=spec.name, path=str(path)))
        return None
    return None if data is None else _RawTable(path, data, first_row=2)


def _found_instead(data_dir: Path, spec: TableSpec) -> str:
    others = sorted(p.name for p in data_dir.glob(f"{spec.name}.*"))
    return f"; found {', '.join(others)}: only .parquet and .csv are read" if others else ""


def _parquet_columns(path: Path) -> list[str]:
    return list(pq.read_schema(path).names)


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
) -> pa.Table | None:
    """Read the contract columns of a CSV file as text, keeping one row per line.

    Blank lines are kept as rows (of empty strings) so that row i is always line i + 2, which
    the problem reports rely on; they are dropped after validation.
    """
    read = pacsv.ReadOptions(column_names=header, skip_rows=1)
    convert = pacsv.ConvertOptions(
        include_columns=present,
        column_types=dict.fromkeys(present, pa.large_string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        return pacsv.read_csv(path, read, pacsv.ParseOptions(ignore_empty_lines=False), convert)
    except pa.ArrowInvalid as exc:
        if "CSV parse error" not in str(exc):
            raise
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
            samples=tuple(_show(f"{row.actual_columns} fields: {row.text}") for row in shown),
        )
    )
    return None


def _coerce(spec: TableSpec, raw: _RawTable) -> tuple[pd.DataFrame, list[_RowIssue], np.ndarray]:
    """Coerce the raw columns to contract types and find the row-level problems.

    Returns:
        The coerced frame (all rows, contract columns present in the source), the row issues,
        and the mask of blank CSV lines.
    """
    n = raw.data.num_rows
    columns: dict[str, pd.Series] = {}
    missing: dict[str, np.ndarray] = {}
    issues: list[_RowIssue] = []
    blank = np.zeros(n, dtype=bool)
    if raw.first_row == 2 and raw.data.num_columns:
        blank = np.ones(n, dtype=bool)
        for name in raw.data.column_names:
            blank &= _np_mask(pc.equal(raw.data[name], ""))
    for name in raw.data.column_names:
        column = spec.column(name)
        values, is_missing, col_issues = _coerce_column(raw.data[name], column)
        columns[name], missing[name] = values, is_missing
        if column.required and is_missing.any():
            reason = REASON_MISSING_ID if column.kind == "id" else REASON_MISSING
            issues.append(_RowIssue(name, reason, is_missing))
        issues.extend(_RowIssue(name, reason, mask) for reason, mask in col_issues)
    frame = pd.DataFrame(columns, copy=False) if columns else pd.DataFrame(index=range(n))
    if spec.name == "events" and "event" in columns:
        issues.extend(_survey_issues(frame, missing.get("value")))
    if spec.name == "customers" and "customer_id" in columns:
        repeated = frame["customer_id"].duplicated(keep=False).to_numpy() & ~missing["customer_id"]
        if repeated.any():
            issues.append(_RowIssue("customer_id", REASON_DUPLICATE_ID, repeated))
    return frame, issues, blank


def _coerce_column(
    data: pa.ChunkedArray, column: Column
) -> tuple[pd.Series, np.ndarray, list[tuple[str, np.ndarray]]]:
    """Coerce one column; returns the values, the missing mask and (reason, mask) problems."""
    issues: list[tuple[str, np.ndarray]] = []
    if column.kind in ("id", "string"):
        text, missing = _clean_text(data)
        return text.to_pandas().astype("str"), missing, issues
    if column.kind == "timestamp":
        values, missing, unparsable = _to_timestamps(data)
        if unparsable.any():
            issues.append((REASON_TIMESTAMP, unparsable))
        return values, missing, issues
    numbers, missing, unparsable = _to_numbers(data)
    if unparsable.any():
        issues.append((REASON_NUMBER, unparsable))
    infinite = np.isinf(numbers)
    if infinite.any():
        issues.append((REASON_NON_FINITE, infinite))
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


def _survey_issues(frame: pd.DataFrame, value_missing: np.ndarray | None) -> list[_RowIssue]:
    """Survey events need a score within the range of their scale."""
    issues: list[_RowIssue] = []
    event = frame["event"]
    value = frame["value"].to_numpy() if "value" in frame else np.full(len(frame), np.nan)
    absent = value_missing if value_missing is not None else np.ones(len(frame), dtype=bool)
    for name, (low, high) in SURVEY_RANGES.items():
        is_survey = (event == name).to_numpy(dtype=bool, na_value=False)
        if not is_survey.any():
            continue
        no_score = is_survey & absent
        if no_score.any():
            issues.append(_RowIssue("value", f"{REASON_SURVEY_MISSING} for '{name}'", no_score))
        # Non-finite values are already reported as such.
        outside = is_survey & np.isfinite(value) & ((value < low) | (value > high))
        if outside.any():
            issues.append(_RowIssue("value", f"'{name}' score outside {low:g}-{high:g}", outside))
    return issues


def _quarantine_frame(raw: _RawTable, issues: list[_RowIssue], bad: np.ndarray) -> pd.DataFrame:
    """The bad rows with their raw values, source row number and problems."""
    idx = np.flatnonzero(bad)
    labels = np.full(len(idx), "", dtype=object)
    for issue in issues:
        hit = issue.mask[idx]
        labels[hit] = labels[hit] + f"; {issue.column}: {issue.reason}"
    out = raw.data.take(pa.array(idx)).to_pandas()
    out.insert(0, "problem", [label.removeprefix("; ") for label in labels])
    out.insert(0, "source_row", idx + raw.first_row)
    return out


def _warn_duplicates(
    name: str,
    path: str,
    first_row: int,
    kept: np.ndarray,
    frame: pd.DataFrame,
    report: ValidationReport,
) -> None:
    """Count exact duplicate rows (kept: identical purchase lines can be legitimate)."""
    if name == "customers" or len(frame) < 2:
        return  # customers: a repeated customer_id is already an error
    dup = _duplicate_positions(frame)
    if dup.size:
        report.add(
            Problem(
                "warning",
                "exact duplicate rows, kept (identical lines can be legitimate)",
                table=name,
                path=path,
                n_rows=int(dup.size),
                rows=tuple(int(i) + first_row for i in np.flatnonzero(kept)[dup[:MAX_SHOWN]]),
            )
        )


def _duplicate_positions(frame: pd.DataFrame) -> np.ndarray:
    """Positions of rows equal to an earlier row.

    Hashing rows and sorting the hashes finds the candidates in about a second for 20M rows,
    where pandas' `duplicated` takes half a minute; only candidates get the exact comparison.
    """
    hashes = np.zeros(len(frame), dtype=np.uint64)
    for name in frame.columns:
        # One column at a time keeps polars' copy of the strings to one column's worth.
        hashes = hashes * np.uint64(0x9E3779B97F4A7C15) ^ _hashes(frame[name])
    ordered = np.sort(hashes)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if not repeated.size:
        return np.empty(0, dtype=np.int64)
    slot = np.searchsorted(repeated, hashes).clip(max=repeated.size - 1)
    candidates = np.flatnonzero(repeated[slot] == hashes)
    exact = frame.iloc[candidates].duplicated(keep="first").to_numpy()
    return candidates[exact]


def _cross_table_infos(frames: dict[str, pd.DataFrame], report: ValidationReport) -> None:
    """Report customers without transactions and event names outside the known vocabulary."""
    events = frames.get("events")
    if events is not None and "event" in events:
        names = events["event"].dropna()
        unknown = names[~names.isin(KNOWN_EVENTS)]
        if len(unknown):
            counts = unknown.value_counts()
            listed = ", ".join(f"{k} ({v:,})" for k, v in counts.head(MAX_SHOWN).items())
            more = ", ..." if len(counts) > MAX_SHOWN else ""
            report.add(
                Problem(
                    "info",
                    f"{_plural(len(counts), 'event name')} outside the known vocabulary, "
                    f"used as generic events: {listed}{more}",
                    table="events",
                    path=report.sources.get("events"),
                    n_rows=len(unknown),
                )
            )
    transactions = frames.get("transactions")
    if transactions is None or "customer_id" not in transactions:
        return
    others = [
        frames[name]["customer_id"]
        for name in ("customers", "events")
        if name in frames and "customer_id" in frames[name]
    ]
    if not others:
        return
    # Hash sets of distinct ids in native code: a probe per row of 20M string ids against a
    # sorted array took half a minute on a million customers.
    known = pl.Series("id", transactions["customer_id"]).drop_nulls().unique()
    ids = pl.concat([pl.Series("id", column) for column in others]).drop_nulls()
    ids = ids.unique(maintain_order=True)
    unscored = ids.filter(~ids.is_in(known)).to_list()
    if len(unscored):
        sample = ", ".join(unscored[:MAX_SHOWN])
        more = ", ..." if len(unscored) > MAX_SHOWN else ""
        report.add(
            Problem(
                "info",
                f"{_plural(len(unscored), 'customer')} in customers/events without any "
                f"transaction (valid; not scored): {sample}{more}",
            )
        )


def _hashes(values: pd.Series) -> np.ndarray:
    """A 64-bit hash per value (equal values, equal hashes), computed by polars in native code."""
    column = pl.from_pandas(values.reset_index(drop=True).to_frame(), rechunk=False)
    return column.to_series().hash().to_numpy()


# --- helpers -----------------------------------------------------------------------------------


def _np_mask(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _samples(data: pa.Table, column: str, idx: np.ndarray) -> tuple[str, ...]:
    if column not in data.column_names:
        return ()
    return tuple(_show(v) for v in data[column].take(pa.array(idx)).to_pylist())


def _show(value: object) -> str:
    if value is None:
        return "null"
    text = value if isinstance(value, str) else str(value)
    if len(text) > _MAX_SAMPLE_CHARS:
        text = text[: _MAX_SAMPLE_CHARS - 3] + "..."
    return repr(text)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _csv_ready(df: pd.DataFrame) -> pd.DataFrame:
    """The frame with timestamp columns as ISO 8601 text, for CSV."""
    out = {}
    for name, series in df.items():
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            text = _iso(series.dt.tz_convert("UTC").dt.tz_localize(None))
            out[name] = text.where(text.isna(), text + "Z")
        elif pd.api.types.is_datetime64_dtype(series.dtype):
            out[name] = _iso(series)
        else:
            out[name] = series
    return pd.DataFrame(out, index=df.index, copy=False)


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
