"""Reading one contract table's file (Parquet, or CSV as text) into Arrow, with its problems."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.schema import TableSpec
from features.validation import (
    MAX_SHOWN,
    Problem,
    RawTable,
    ValidationReport,
    show_value,
)


def read_table(spec: TableSpec, data_dir: Path, report: ValidationReport) -> RawTable | None:
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


def is_number(kind: pa.DataType) -> bool:
    """Whether an Arrow column type holds numbers (ids typed as numbers are told apart)."""
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
