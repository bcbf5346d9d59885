"""Checks across a data folder's tables and against the clock: what no single value shows; pure.

The loader (`features.io`) runs the first three on the coerced tables, every row still in place
so that rows are numbered as in the file; a command runs `require_customers` once it knows its
as-of.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from features.engagement import event_slug
from features.schema import ID, KNOWN_EVENTS, LATEST, Tables, TableSpec
from features.validation import (
    MAX_SHOWN,
    DataValidationError,
    Problem,
    RowIssue,
    ValidationReport,
    show_value,
)

# Text that reads as an integer once typed as a number: sign, leading zeros, a zero fraction.
_INTEGER_TEXT = re.compile(r"^[+-]?\d+(?:\.0*)?$")


def reason_future(since: pd.Timestamp) -> str:
    """Why a row dated from `since` (`features.schema.future_from`) on is flagged."""
    tomorrow = (since - pd.Timedelta(days=1)).date()
    return (
        f"dated after tomorrow ({tomorrow}, UTC): in the future; not counted for the default as-of"
    )


def future_issues(spec: TableSpec, frame: pd.DataFrame, since: pd.Timestamp) -> list[RowIssue]:
    """Rows of a coerced table dated from `since` on, one issue per timestamp column.

    A `scheduled` column (a term's `end_ts`) is a date known ahead: a future one is normal. A
    term's `start_ts` or `cancel_ts` in the future is a fact not yet happened, as a future
    transaction. Timestamps past `LATEST` are errors of their own (`REASON_TIMESTAMP_RANGE`),
    not counted here. Whether these rows are kept with a warning or set aside is the loader's
    choice.
    """
    issues = []
    for column in spec.columns:
        if column.kind != "timestamp" or column.scheduled or column.name not in frame:
            continue
        stamps = frame[column.name].to_numpy()
        future = (
            ~np.isnat(stamps)
            & (stamps >= since.to_datetime64())
            & (stamps < LATEST.to_datetime64())
        )
        if future.any():
            issues.append(RowIssue(column.name, reason_future(since), future))
    return issues


def report_id_types(
    frames: Mapping[str, pd.DataFrame],
    numeric: Mapping[str, bool],
    sources: Mapping[str, str],
    first_rows: Mapping[str, int],
    report: ValidationReport,
) -> None:
    """Customer ids typed as numbers in one file and as text in another, that then disagree.

    A number has one spelling (`42`), text several (`0042`, `42.0`, `+42`): text ids that match
    a numeric id of another file only as numbers would leave their rows without a customer. They
    are errors (not quarantinable: the files disagree, not the rows) naming both files.

    Args:
        frames: the coerced tables, every row (row i is the file's row i + first row).
        numeric: per table, whether its file stores customer_id as numbers.
        sources: the file of each table.
        first_rows: the user-visible number of each table's first data row.
        report: where the problems go.
    """
    typed = [name for name in frames if numeric.get(name) and ID in frames[name]]
    if not typed:
        return
    numeric_ids = pd.Index(
        pd.concat([frames[name][ID] for name in typed], ignore_index=True).dropna().unique()
    )
    for name, frame in frames.items():
        if numeric.get(name, True) or ID not in frame:
            continue
        ids = frame[ID]
        distinct = pd.Series(ids.dropna().unique(), dtype="str")
        candidates = distinct[
            ~distinct.isin(numeric_ids) & distinct.str.fullmatch(_INTEGER_TEXT.pattern)
        ]
        if candidates.empty:
            continue
        canonical = candidates.map(_integer_text)
        orphaned = candidates[canonical.isin(numeric_ids).to_numpy()]
        if orphaned.empty:
            continue
        mask = ids.isin(orphaned).to_numpy()
        idx = np.flatnonzero(mask)[:MAX_SHOWN]
        files = ", ".join(sources[other] for other in typed)
        report.add(
            Problem(
                "error",
                f"customer_id is text here but numbers in {files}: {len(orphaned):,} of its ids "
                f"match a customer there only as numbers (e.g. {orphaned.iloc[0]!r} and "
                f"{_integer_text(orphaned.iloc[0])}), so their rows would belong to nobody; "
                "write customer ids the same way, as text, in every file",
                table=name,
                path=sources.get(name),
                column=ID,
                n_rows=int(mask.sum()),
                rows=tuple(int(i) + first_rows[name] for i in idx),
                samples=tuple(show_value(ids.iloc[i]) for i in idx),
            )
        )


def report_event_collisions(
    events: pd.DataFrame, path: str | None, first_row: int, report: ValidationReport
) -> None:
    """Event names that become the same feature columns (`Email Open`, `EMAIL-OPEN`, `email_open`).

    Known event names always get columns, so `Email Open` alone collides with `email_open`. The
    rows of every name but one (the known name, else the most frequent) are errors, one problem
    per column name, listing every name.

    Args:
        events: the coerced events table, every row.
        path: its file.
        first_row: the user-visible number of its first data row.
        report: where the problems go.
    """
    if "event" not in events:
        return
    names = events["event"]
    counts = names.value_counts()
    groups: dict[str, dict[str, int]] = {}
    for name in KNOWN_EVENTS:
        groups.setdefault(event_slug(name), {})[name] = 0
    for name, count in counts.items():
        groups.setdefault(event_slug(str(name)), {})[str(name)] = int(count)
    for slug, members in groups.items():
        if len(members) < 2:
            continue
        known = [name for name in members if name in KNOWN_EVENTS]
        keep = known[0] if known else max(members, key=lambda m: (members[m], m))
        mask = names.isin([name for name in members if name != keep]).to_numpy()
        idx = np.flatnonzero(mask)[:MAX_SHOWN]
        listed = ", ".join(f"{name!r} ({count:,})" for name, count in members.items())
        report.add(
            Problem(
                "error",
                f"event names that become the same feature columns ({slug}_...): {listed}; "
                f"write each event one way, e.g. {keep!r}",
                table="events",
                path=path,
                column="event",
                n_rows=int(mask.sum()),
                rows=tuple(int(i) + first_row for i in idx),
                samples=tuple(show_value(names.iloc[i]) for i in idx),
            )
        )


def require_customers(tables: Tables, as_of: pd.Timestamp) -> None:
    """Refuse an as-of before which no customer has a transaction: there is nobody to score.

    An empty feed or an as-of before the data is a data error, not a run of zero customers.

    Raises:
        DataValidationError: no transaction is dated before `as_of`.
    """
    ts = tables.transactions["ts"]
    if bool((ts < as_of).any()):
        return
    path = tables.sources.get("transactions")
    first = ts.min()
    detail = "the table has no rows" if pd.isna(first) else f"the first is dated {_moment(first)}"
    report = ValidationReport(data_dir=str(Path(path).parent) if path else "(in memory)")
    report.add(
        Problem(
            "error",
            f"no transaction before the as-of {_moment(as_of)} ({detail}): no customer to score",
            table="transactions",
            path=path,
            column="ts",
        )
    )
    raise DataValidationError(report)


def _integer_text(text: str) -> str:
    """How a number-typed column spells the integer this text reads as."""
    return str(int(text.split(".")[0]))


def _moment(ts: pd.Timestamp) -> str:
    return str(ts.date()) if ts == ts.normalize() else ts.isoformat()
