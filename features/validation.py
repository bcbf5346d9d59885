"""The data contract's findings: problems, the report, row checks and the raw-table type; pure.

A finding is built here from tables already in memory; reading and writing files is the job of
`features.io`, and coercing a raw table to contract types that of `features.coercion`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

from features.schema import (
    EARLIEST,
    KNOWN_EVENTS,
    LATEST,
    MAX_ABS_NUMBER,
    MAX_ID_LENGTH,
    TABLE_SPECS,
)

Severity = Literal["error", "warning", "info"]

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
REASON_TIMESTAMP_RANGE = (
    f"timestamp outside {EARLIEST.date()} to {(LATEST - pd.Timedelta(days=1)).date()}"
)
REASON_NUMBER_RANGE = f"number beyond +-{MAX_ABS_NUMBER:,.0f} (the contract's limit)"
REASON_ID_LENGTH = f"customer_id longer than {MAX_ID_LENGTH} characters (the scores store's limit)"
REASON_ID_NUL = "customer_id holds a NUL character"
REASON_WHOLE = "not a whole number"
REASON_BOOL = "not a yes/no value (expected true/false, 1/0 or yes/no)"
REASON_END_NOT_AFTER_START = "end_ts not after start_ts (a term ends after it starts)"
REASON_CANCEL_AFTER_END = "cancel_ts after end_ts (notice is given before the term ends)"
REASON_OVERLAP = (
    "overlapping terms of one customer and plan (a term starts before another ends; "
    "a renewal starts when the last term ends)"
)


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


@dataclass
class RawTable:
    """One table as read, before coercion: contract columns only, CSV values as text.

    Attributes:
        path: the file read.
        data: its contract columns.
        first_row: the user-visible number of data row 0: 2 for CSV (after the header), else 1.
        filled_elsewhere: for CSV, the lines with content in a column outside the contract
            (None: none or not known); such a line is never a blank line.
    """

    path: Path
    data: pa.Table
    first_row: int
    filled_elsewhere: np.ndarray | None = None


@dataclass
class RowIssue:
    """One row-level problem of a coerced table: its column, reason and the rows it hits."""

    column: str
    reason: str
    mask: np.ndarray


def check_rows(
    name: str,
    raw: RawTable,
    frame: pd.DataFrame,
    issues: list[RowIssue],
    blank: np.ndarray,
    report: ValidationReport,
    *,
    quarantined: bool,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Report a coerced table's row problems, blank lines and exact duplicate rows.

    Args:
        name: the contract table name.
        raw: the table as read (its values are shown as samples).
        frame: the coerced table, all rows (as `features.coercion.coerce_table` returns it).
        issues: its row issues.
        blank: its mask of blank CSV lines.
        report: where the problems go.
        quarantined: the bad rows are set aside, so their problems are warnings, not errors.

    Returns:
        The frame without bad and blank rows, and the mask of bad rows.
    """
    bad = _report_row_issues(name, raw, issues, blank, report, quarantined=quarantined)
    keep = ~(bad | blank)
    if not keep.all():
        frame = frame.loc[keep].reset_index(drop=True)
    _warn_duplicates(name, str(raw.path), raw.first_row, keep, frame, report)
    return frame, bad


def quarantine_frame(raw: RawTable, issues: list[RowIssue], bad: np.ndarray) -> pd.DataFrame:
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


def report_cross_table(frames: dict[str, pd.DataFrame], report: ValidationReport) -> None:
    """Report customers without transactions and event names outside the known vocabulary.

    Customers found only in customers, events or subscriptions are valid (not scored, unless
    they hold a subscription term at the date): counted as info, naming the tables present
    besides transactions.
    """
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
    holders = [
        name
        for name in ("customers", "events", "subscriptions")
        if name in frames and "customer_id" in frames[name]
    ]
    others = [frames[name]["customer_id"] for name in holders]
    if not others:
        return
    # Hash sets of distinct ids in native code: probing every row of a large table against a
    # sorted array is far slower.
    known = pl.Series("id", transactions["customer_id"]).drop_nulls().unique()
    ids = pl.concat([pl.Series("id", column) for column in others]).drop_nulls()
    ids = ids.unique(maintain_order=True)
    unscored = ids.filter(~ids.is_in(known.implode())).to_list()
    held = (
        ", unless they hold a subscription term at the date" if "subscriptions" in holders else ""
    )
    if len(unscored):
        sample = ", ".join(unscored[:MAX_SHOWN])
        more = ", ..." if len(unscored) > MAX_SHOWN else ""
        report.add(
            Problem(
                "info",
                f"{_plural(len(unscored), 'customer')} in {'/'.join(holders)} without any "
                f"transaction (valid; not scored{held}): {sample}{more}",
            )
        )


def show_value(value: object) -> str:
    """A raw value as problems show it: quoted, cut to a few dozen characters, None as null."""
    if value is None:
        return "null"
    text = value if isinstance(value, str) else str(value)
    if len(text) > _MAX_SAMPLE_CHARS:
        text = text[: _MAX_SAMPLE_CHARS - 3] + "..."
    return repr(text)


def warn_rows(
    name: str, raw: RawTable, issues: list[RowIssue], blank: np.ndarray, report: ValidationReport
) -> None:
    """Report row issues as warnings, rows kept (e.g. rows dated in the future)."""
    _problems_of(name, raw, issues, blank, report, severity="warning", quarantined=False)


def _report_row_issues(
    name: str,
    raw: RawTable,
    issues: list[RowIssue],
    blank: np.ndarray,
    report: ValidationReport,
    *,
    quarantined: bool,
) -> np.ndarray:
    """Turn row issues into problems with row numbers and samples; returns the bad-row mask."""
    path = str(raw.path)
    severity: Severity = "warning" if quarantined else "error"
    bad = _problems_of(name, raw, issues, blank, report, severity, quarantined=quarantined)
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


def _problems_of(
    name: str,
    raw: RawTable,
    issues: list[RowIssue],
    blank: np.ndarray,
    report: ValidationReport,
    severity: Severity,
    *,
    quarantined: bool,
) -> np.ndarray:
    """One problem per row issue (blank lines left out); returns the mask of the rows hit."""
    hit = np.zeros(len(blank), dtype=bool)
    for issue in issues:
        mask = issue.mask & ~blank
        n_hit = int(mask.sum())
        if not n_hit:
            continue
        hit |= mask
        idx = np.flatnonzero(mask)[:MAX_SHOWN]
        report.add(
            Problem(
                severity,
                issue.reason,
                table=name,
                path=str(raw.path),
                column=issue.column,
                n_rows=n_hit,
                rows=tuple(int(i) + raw.first_row for i in idx),
                samples=_samples(raw.data, issue.column, idx),
                quarantined=quarantined,
            )
        )
    return hit


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

    Hashing rows and sorting the hashes finds the candidates much faster than pandas'
    `duplicated` on a large table; only candidates get the exact comparison.
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


def _hashes(values: pd.Series) -> np.ndarray:
    """A 64-bit hash per value (equal values, equal hashes), computed by polars in native code."""
    column = pl.from_pandas(values.reset_index(drop=True).to_frame(), rechunk=False)
    return column.to_series().hash().to_numpy()


def _samples(data: pa.Table, column: str, idx: np.ndarray) -> tuple[str, ...]:
    if column not in data.column_names:
        return ()
    return tuple(show_value(v) for v in data[column].take(pa.array(idx)).to_pylist())


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
