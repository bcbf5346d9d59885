"""Folders that crashed the loader or lost rows quietly: each an error naming file, column, rows."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.io import load_tables, validate_folder
from features.schema import MAX_ABS_NUMBER, MAX_ID_LENGTH, future_from
from features.validation import DataValidationError, Problem


def _folder(tmp_path: Path, **files: str) -> Path:
    """A data folder of the given files (name with extension -> text)."""
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def _errors(folder: Path) -> list[Problem]:
    with pytest.raises(DataValidationError) as caught:
        load_tables(folder)
    return caught.value.problems


def _parquet(folder: Path, name: str, **columns: object) -> None:
    folder.mkdir(exist_ok=True)
    pq.write_table(pa.table(columns), folder / f"{name}.parquet")


def _day(offset: int) -> str:
    """A date relative to today (UTC)."""
    return (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=offset)).isoformat()


# --- files the reader could not make sense of ---------------------------------------------------


def test_a_semicolon_separated_file_names_its_missing_columns_and_the_separator(
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, **{"transactions.csv": "customer_id;ts;amount\nc1;2024-01-01;5\n"})

    problems = _errors(folder)

    assert [p.column for p in problems] == ["customer_id", "ts", "amount"]
    assert all(p.path == str(folder / "transactions.csv") for p in problems)
    assert all("separated by ';'" in p.message for p in problems)


def test_a_header_without_any_contract_column_is_reported_not_crashed_on(tmp_path: Path) -> None:
    # Arrow reads *every* column when asked for none: a date column used to crash the loader.
    folder = _folder(tmp_path, **{"transactions.csv": "id,date,value\nc1,2024-01-01,5\n"})

    report = validate_folder(folder)

    assert [(p.column, p.message) for p in report.errors] == [
        (column, "missing required column") for column in ("customer_id", "ts", "amount")
    ]


def test_a_header_without_customer_id_names_the_column(tmp_path: Path) -> None:
    folder = _folder(tmp_path, **{"transactions.csv": "id,ts,amount\nc1,2024-01-01,5\n"})

    (problem,) = _errors(folder)

    assert "column 'customer_id': missing required column" in problem.render()


# --- values out of what the contract and the store can hold ------------------------------------


@pytest.mark.parametrize(
    ("files", "column", "reason", "rows"),
    [
        pytest.param(
            {"transactions.csv": "customer_id,ts,amount\nc1,2024-01-01,1\nc2,2300-01-01,2\n"},
            "ts",
            "timestamp outside 1900-01-01 to 2261-12-31",
            (3,),
            id="year-2300",
        ),
        pytest.param(
            {"transactions.csv": "customer_id,ts,amount\nc1,1850-01-01,1\n"},
            "ts",
            "timestamp outside 1900-01-01 to 2261-12-31",
            (2,),
            id="year-1850",
        ),
        pytest.param(
            {"transactions.csv": "customer_id,ts,amount\nc1,2024-01-01,1e308\nc2,2024-01-01,1\n"},
            "amount",
            "number beyond +-1,000,000,000",
            (2,),
            id="amount-1e308",
        ),
        pytest.param(
            {"transactions.csv": "customer_id,ts,amount,discount\nc1,2024-01-01,1,2e9\n"},
            "discount",
            "number beyond +-1,000,000,000",
            (2,),
            id="discount-2e9",
        ),
        pytest.param(
            {
                "transactions.csv": "customer_id,ts,amount\n"
                f"{'x' * (MAX_ID_LENGTH + 1)},2024-01-01,1\n{'y' * MAX_ID_LENGTH},2024-01-01,1\n"
            },
            "customer_id",
            "customer_id longer than 255 characters",
            (2,),
            id="id-too-long",
        ),
        pytest.param(
            {
                "transactions.csv": "customer_id,ts,amount\nc1,2024-01-01,1\n",
                "events.csv": "customer_id,ts,event\nc1,2024-01-01,session\nc\x002,2024-01-01,x\n",
            },
            "customer_id",
            "customer_id holds a NUL character",
            (3,),
            id="id-with-nul",
        ),
    ],
)
def test_values_beyond_the_contracts_limits_are_bad_rows(
    tmp_path: Path, files: dict[str, str], column: str, reason: str, rows: tuple[int, ...]
) -> None:
    folder = _folder(tmp_path, **files)

    (problem,) = _errors(folder)

    assert (problem.column, problem.rows) == (column, rows)
    assert problem.message.startswith(reason)
    assert problem.path is not None and problem.path.endswith(".csv")


def test_parquet_values_beyond_the_limits_are_bad_rows_too(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    _parquet(
        folder,
        "transactions",
        customer_id=["c1", "c2", "c3"],
        ts=pa.array(
            [dt.datetime(2300, 1, 1), dt.datetime(2024, 1, 1), dt.datetime(2300, 1, 1)],
            pa.timestamp("us"),
        ),
        amount=[-MAX_ABS_NUMBER * 10, MAX_ABS_NUMBER, 1.0],
    )

    problems = {p.column: p for p in _errors(folder)}

    assert problems["ts"].rows == (1, 3)
    assert problems["amount"].rows == (1,)  # exactly the limit is accepted


def test_a_quarantine_sets_aside_rows_beyond_the_limits(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        **{"transactions.csv": "customer_id,ts,amount\nc1,2024-01-01,1\nc2,2024-01-01,1e308\n"},
    )

    result = load_tables(folder, quarantine_dir=tmp_path / "quarantine")

    assert result.tables.transactions["customer_id"].tolist() == ["c1"]
    assert result.report.quarantined == {"transactions": 1}


# --- a line that only looks blank ---------------------------------------------------------------


def test_a_line_with_content_only_outside_the_contract_is_a_bad_row(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        **{
            "transactions.csv": "customer_id,ts,amount,note,\n"
            "c1,2024-01-01,1,,\n"
            ",,,call back,\n"  # line 3: content, in a column the contract ignores
            ",,,,later\n"  # line 4: content in an unnamed column
            ",,,,\n"  # line 5: blank, as a spreadsheet writes an empty row
            "\n"  # line 6: blank
        },
    )

    problems = _errors(folder)

    assert {p.column for p in problems} == {"customer_id", "ts", "amount"}
    assert all(p.rows == (3, 4) for p in problems)
    report = validate_folder(folder)
    (blank,) = [p for p in report.infos if p.message == "blank lines skipped"]
    assert blank.rows == (5, 6)


# --- rows dated in the future -------------------------------------------------------------------


def test_rows_dated_after_tomorrow_are_flagged_kept_and_do_not_move_the_default(
    tmp_path: Path,
) -> None:
    folder = _folder(
        tmp_path,
        **{
            "transactions.csv": "customer_id,ts,amount\n"
            f"c1,2026-01-10,1\nc2,{_day(1)}T08:00,1\nc3,{_day(2)},1\nc4,2062-10-30,1\n",
            "customers.csv": f"customer_id,signup_ts\nc1,2025-01-01\nc2,{_day(40)}\n",
        },
    )

    result = load_tables(folder)

    flagged = {p.column: p for p in result.report.warnings if "after tomorrow" in p.message}
    assert flagged["ts"].rows == (4, 5) and flagged["ts"].n_rows == 2  # tomorrow is not flagged
    assert flagged["ts"].samples == (repr(_day(2)), "'2062-10-30'")
    assert flagged["signup_ts"].rows == (3,)
    assert len(result.tables.transactions) == 4  # kept: no as-of up to tomorrow reads them
    from features.schema import default_as_of

    assert default_as_of(result.tables) == pd.Timestamp(_day(1))


def test_rows_dated_after_tomorrow_are_set_aside_under_quarantine(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        **{"transactions.csv": "customer_id,ts,amount\nc1,2026-01-10,1\nc2,2062-10-30,1\n"},
    )

    result = load_tables(folder, quarantine_dir=tmp_path / "quarantine")

    assert result.tables.transactions["customer_id"].tolist() == ["c1"]
    assert result.report.quarantined == {"transactions": 1}
    saved = pd.read_csv(tmp_path / "quarantine" / "transactions.csv", dtype=str)
    assert saved["problem"].str.startswith("ts: dated after tomorrow").all()


def test_future_from_is_the_day_after_tomorrow() -> None:
    assert future_from(pd.Timestamp("2026-12-04T23:59")) == pd.Timestamp("2026-12-06")


# --- files that disagree with each other --------------------------------------------------------


def test_event_names_that_become_the_same_columns_are_named(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        **{
            "transactions.csv": "customer_id,ts,amount\nc1,2024-01-01,1\n",
            "events.csv": "customer_id,ts,event\n"
            "c1,2024-01-01,Email Open\nc1,2024-01-02,EMAIL-OPEN\nc1,2024-01-03,email_open\n"
            "c1,2024-01-04,Wish List\nc1,2024-01-05,wish list\nc1,2024-01-06,wish list\n",
        },
    )

    problems = _errors(folder)

    email, wish = problems
    assert email.column == "event" and email.path == str(folder / "events.csv")
    assert "'Email Open'" in email.message and "'EMAIL-OPEN'" in email.message
    assert email.rows == (2, 3)  # the known name is the one to keep
    assert wish.rows == (5,) and "e.g. 'wish list'" in wish.message  # the most frequent


def test_a_name_colliding_with_a_known_event_alone_is_an_error(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        **{
            "transactions.csv": "customer_id,ts,amount\nc1,2024-01-01,1\n",
            "events.csv": "customer_id,ts,event\nc1,2024-01-01,NPS\n",
        },
    )

    (problem,) = _errors(folder)

    assert "'NPS'" in problem.message and problem.rows == (2,)


def test_ids_typed_as_numbers_in_one_file_and_spelled_otherwise_in_another_are_refused(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "data"
    ts = pa.array([dt.datetime(2024, 1, 1)] * 3, pa.timestamp("us"))
    _parquet(folder, "transactions", customer_id=[1, 2, 42], ts=ts, amount=[1.0, 2.0, 3.0])
    _parquet(folder, "events", customer_id=["0001", "2", "042"], ts=ts, event=["session"] * 3)
    _parquet(folder, "customers", customer_id=["1", "2", "42"], segment=["a", "b", "c"])

    (problem,) = _errors(folder)

    assert problem.path == str(folder / "events.parquet") and problem.column == "customer_id"
    assert str(folder / "transactions.parquet") in problem.message
    assert problem.rows == (1, 3) and problem.samples == ("'0001'", "'042'")


def test_ids_typed_as_numbers_and_written_alike_as_text_load_together(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    ts = pa.array([dt.datetime(2024, 1, 1)] * 2, pa.timestamp("us"))
    _parquet(folder, "transactions", customer_id=[1, 2], ts=ts, amount=[1.0, 2.0])
    (folder / "customers.csv").write_text("customer_id,segment\n1,a\n2,b\nC7,c\n")

    result = load_tables(folder)

    assert result.tables.transactions["customer_id"].tolist() == ["1", "2"]
    assert result.tables.customers is not None
    assert result.tables.customers["customer_id"].tolist() == ["1", "2", "C7"]
