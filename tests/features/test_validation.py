"""Tests for the row checks and the report, on in-memory Arrow tables (no files)."""

from __future__ import annotations

import csv
from io import StringIO
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from features.coercion import coerce_table
from features.schema import TABLE_SPECS
from features.validation import (
    DataValidationError,
    Problem,
    RawTable,
    ValidationReport,
    check_rows,
    report_cross_table,
)


def _csv(name: str, text: str) -> RawTable:
    """A CSV table as the loader reads it, in memory: every value text, row i on line i + 2."""
    header, *rows = csv.reader(StringIO(text))
    data = pa.table(
        {
            column: pa.array([row[i] for row in rows], pa.large_string())
            for i, column in enumerate(header)
        }
    )
    return RawTable(Path(f"{name}.csv"), data, first_row=2)


def _checked(name: str, raw: RawTable, report: ValidationReport) -> pd.DataFrame:
    """Coerce and check one table as the loader does (without quarantine); the kept rows."""
    frame, issues, blank = coerce_table(TABLE_SPECS[name], raw)
    kept, _ = check_rows(name, raw, frame, issues, blank, report, quarantined=False)
    return kept


def _errors(name: str, raw: RawTable) -> list[Problem]:
    report = ValidationReport(data_dir="memory")
    _checked(name, raw, report)
    return report.errors


# --- one test per violation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "text", "column", "reason", "rows", "sample"),
    [
        pytest.param(
            "transactions",
            "customer_id,ts,amount\nc1,2024-01-01,1\n,2024-01-01,2\n   ,2024-01-01,3\n",
            "customer_id",
            "missing customer_id",
            (3, 4),
            "'   '",
            id="empty-customer-id",
        ),
        pytest.param(
            "transactions",
            "customer_id,ts,amount\nc1,2024-13-01,1\nc1,2024-01-01,2\nc1,yesterday,3\n",
            "ts",
            "unparsable timestamp",
            (2, 4),
            "'2024-13-01'",
            id="unparsable-timestamp",
        ),
        pytest.param(
            "transactions",
            "customer_id,ts,amount\nc1,,1\nc2,2024-01-01,2\n",
            "ts",
            "missing value",
            (2,),
            "''",
            id="missing-ts",
        ),
        pytest.param(
            "transactions",
            "customer_id,ts,amount\nc1,2024-01-01,\nc2,2024-01-01,2\n",
            "amount",
            "missing value",
            (2,),
            "''",
            id="missing-amount",
        ),
        pytest.param(
            "transactions",
            'customer_id,ts,amount\nc1,2024-01-01,1\nc2,2024-01-01,"1,5"\nc3,2024-01-01,12EUR\n',
            "amount",
            "unparsable number",
            (3, 4),
            "'1,5'",
            id="unparsable-number",
        ),
        pytest.param(
            "transactions",
            "customer_id,ts,amount,margin\nc1,2024-01-01,1,x\n",
            "margin",
            "unparsable number",
            (2,),
            "'x'",
            id="unparsable-optional-number",
        ),
        pytest.param(
            "transactions",
            "customer_id,ts,amount\nc1,2024-01-01,inf\nc2,2024-01-01,-Infinity\n",
            "amount",
            "non-finite number",
            (2, 3),
            "'inf'",
            id="non-finite",
        ),
        pytest.param(
            "transactions",
            "customer_id,ts,amount,discount\nc1,2024-01-01,1,0\nc2,2024-01-01,2,-0.5\n",
            "discount",
            "below the minimum 0",
            (3,),
            "'-0.5'",
            id="negative-discount",
        ),
        pytest.param(
            "events",
            "customer_id,ts,event\nc1,2024-01-01,session\nc1,2024-01-02,\n",
            "event",
            "missing value",
            (3,),
            "''",
            id="missing-event",
        ),
        pytest.param(
            "events",
            "customer_id,ts,event,value\nc1,2024-01-01,nps,11\nc1,2024-01-02,nps,10\n",
            "value",
            "'nps' score outside 0-10",
            (2,),
            "'11'",
            id="nps-out-of-range",
        ),
        pytest.param(
            "events",
            "customer_id,ts,event,value\nc1,2024-01-01,session,99\nc1,2024-01-02,csat,0\n",
            "value",
            "'csat' score outside 1-5",
            (3,),
            "'0'",
            id="csat-out-of-range",
        ),
        pytest.param(
            "events",
            "customer_id,ts,event,value\nc1,2024-01-01,ces,\nc1,2024-01-02,ces,7\n",
            "value",
            "missing survey score for 'ces'",
            (2,),
            "''",
            id="survey-missing-score",
        ),
        pytest.param(
            "customers",
            "customer_id,signup_ts\nc1,2024-01-01\nc2,01/02/2024\n",
            "signup_ts",
            "unparsable timestamp",
            (3,),
            "'01/02/2024'",
            id="unparsable-optional-timestamp",
        ),
        pytest.param(
            "customers",
            "customer_id,segment\nc1,student\nc1,parent\nc2,parent\n",
            "customer_id",
            "duplicate customer_id",
            (2, 3),
            "'c1'",
            id="duplicate-customer",
        ),
    ],
)
def test_each_violation_names_file_column_count_rows_and_sample(
    table: str,
    text: str,
    column: str,
    reason: str,
    rows: tuple[int, ...],
    sample: str,
) -> None:
    raw = _csv(table, text)
    report = ValidationReport(data_dir="memory")
    _checked(table, raw, report)

    problems = report.errors

    assert len(problems) == 1
    problem = problems[0]
    assert (problem.table, problem.column, problem.n_rows, problem.rows) == (
        table,
        column,
        len(rows),
        rows,
    )
    message = problem.render()
    path = str(raw.path)
    lines = [f"line {row}" for row in rows]
    for part in (path, f"column '{column}'", reason, f"{len(rows)} row", *lines, sample):
        assert part in message
    assert "line" in str(DataValidationError(report))


def test_parquet_violations_use_one_based_data_rows() -> None:
    # As Parquet reads: typed columns, data row 0 is row 1.
    data = pa.table(
        {
            "customer_id": ["a", None, "c", ""],
            "ts": pa.array([0, 1, 2, 3], pa.timestamp("s")),
            "amount": [1.0, 2.0, float("inf"), 4.0],
        }
    )
    raw = RawTable(Path("transactions.parquet"), data, first_row=1)

    problems = {p.column: p for p in _errors("transactions", raw)}

    assert problems["customer_id"].rows == (2, 4)
    assert "row 2 null, row 4 ''" in problems["customer_id"].render()
    assert problems["amount"].rows == (3,)
    assert "row 3 'inf'" in problems["amount"].render()


def test_exact_duplicates_are_kept_with_a_warning() -> None:
    line = "c1,2024-01-01,9.99,o1\n"
    raw = _csv(
        "transactions",
        "customer_id,ts,amount,order_id\n" + line * 3 + "c1,2024-01-01,9.99,o2\n",
    )
    report = ValidationReport(data_dir="memory")

    frame = _checked("transactions", raw, report)

    assert len(frame) == 4
    (warning,) = report.warnings
    assert warning.n_rows == 2
    assert warning.rows == (3, 4)
    assert report.ok


def test_refunds_unknown_events_and_profile_only_customers_are_valid() -> None:
    texts = {
        "transactions": "customer_id,ts,amount\nc1,2024-01-01,-25\n",
        "customers": "customer_id\nc1\nc2\n",
        "events": "customer_id,ts,event\nc1,2024-01-01,webinar\nc3,2024-01-01,session\n",
    }
    report = ValidationReport(data_dir="memory")

    frames = {name: _checked(name, _csv(name, text), report) for name, text in texts.items()}
    report_cross_table(frames, report)

    assert frames["transactions"]["amount"].tolist() == [-25.0]
    assert len(frames["events"]) == 2
    infos = [p.render() for p in report.infos]
    assert any(
        "2 customers in customers/events without any transaction" in i and "c2" in i for i in infos
    )
    assert any("webinar (1)" in i for i in infos)
    assert not report.warnings and report.ok


def test_nan_text_is_missing_not_unparsable() -> None:
    raw = _csv(
        "transactions",
        "customer_id,ts,amount,margin\nc1,2024-01-01,1,NaN\nc1,2024-01-01,2,bad\n",
    )

    (problem,) = _errors("transactions", raw)

    assert (problem.column, problem.rows) == ("margin", (3,))
