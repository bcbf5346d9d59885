"""Tests for the data-folder edge: loading files, their problems, quarantine and atomic writes."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

from features import io
from features.io import load_tables, validate_folder, write_frame, write_tables
from features.schema import Tables
from features.validation import REASON_TIMESTAMP, DataValidationError, Problem

TRANSACTIONS_CSV = """\
customer_id,ts,amount,order_id,margin,category,discount,channel
c1,2024-01-05,20.0,o1,5.0,books,0,web
c1,2024-02-01T10:30:00,-5.5,o2,,books,1.5,app
c2,2024-01-10T08:00:00+02:00,12.25,o3,3.0,,0,store
"""
CUSTOMERS_CSV = """\
customer_id,signup_ts,segment,acquisition_channel,region
c1,2023-12-01,student,ads,north
c2,,parent,,south
"""
EVENTS_CSV = """\
customer_id,ts,event,value,channel
c1,2024-01-06T09:00:00Z,nps,9,email
c2,2024-01-11,session,,app
"""


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def _folder(tmp_path: Path, **tables: str) -> Path:
    """A data folder of CSV tables; transactions default to a valid table."""
    tables.setdefault("transactions", TRANSACTIONS_CSV)
    for name, text in tables.items():
        if text:
            _write(tmp_path / "data", f"{name}.csv", text)
    return tmp_path / "data"


def _errors(folder: Path) -> list[Problem]:
    with pytest.raises(DataValidationError) as caught:
        load_tables(folder)
    return caught.value.problems


def _str_series(values: list[str | None]) -> pd.Series:
    return pd.Series(values, dtype="str")


def _ts(values: list[str | None]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, format="ISO8601"), dtype="datetime64[us]")


# --- loading -------------------------------------------------------------------------------------


def test_loads_csv_tables_with_contract_types(tmp_path: Path) -> None:
    folder = _folder(tmp_path, customers=CUSTOMERS_CSV, events=EVENTS_CSV)

    result = load_tables(folder)

    expected = pd.DataFrame(
        {
            "customer_id": _str_series(["c1", "c1", "c2"]),
            "ts": _ts(["2024-01-05", "2024-02-01T10:30:00", "2024-01-10T06:00:00"]),
            "amount": [20.0, -5.5, 12.25],
            "order_id": _str_series(["o1", "o2", "o3"]),
            "margin": [5.0, np.nan, 3.0],
            "category": _str_series(["books", "books", None]),
            "discount": [0.0, 1.5, 0.0],
            "channel": _str_series(["web", "app", "store"]),
        }
    )
    assert_frame_equal(result.tables.transactions, expected)
    customers = result.tables.customers
    assert customers is not None
    assert customers["signup_ts"].dtype == "datetime64[us]"
    assert customers["signup_ts"].isna().tolist() == [False, True]
    assert result.tables.events is not None
    assert result.tables.events["value"].tolist()[0] == 9.0
    assert result.tables.sources["transactions"] == str(folder / "transactions.csv")
    assert result.report.ok
    assert result.report.row_counts == {"transactions": 3, "customers": 2, "events": 2}


def test_csv_and_parquet_load_to_identical_frames(tmp_path: Path) -> None:
    from_csv = load_tables(_folder(tmp_path, customers=CUSTOMERS_CSV, events=EVENTS_CSV)).tables
    parquet_dir = tmp_path / "parquet"
    parquet_dir.mkdir()
    pq.write_table(
        pa.table(
            {
                "customer_id": ["c1", "c1", "c2"],
                # Zoned in the file; the loader must land on the same naive UTC instants.
                "ts": pa.array(
                    pd.to_datetime(
                        ["2024-01-05", "2024-02-01T10:30:00", "2024-01-10T06:00:00"],
                        format="ISO8601",
                    ).tz_localize("UTC"),
                    pa.timestamp("ms", tz="UTC"),
                ),
                "amount": [20.0, -5.5, 12.25],
                "order_id": ["o1", "o2", "o3"],
                "margin": [5.0, None, 3.0],
                "category": pa.array(["books", "books", None]).dictionary_encode(),
                "discount": pa.array([0, 1.5, 0], pa.float32()),
                "channel": ["web", "app", "store"],
            }
        ),
        parquet_dir / "transactions.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "customer_id": ["c1", "c2"],
                "signup_ts": pa.array([pd.Timestamp("2023-12-01").date(), None], pa.date32()),
                "segment": ["student", "parent"],
                "acquisition_channel": ["ads", None],
                "region": ["north", "south"],
            }
        ),
        parquet_dir / "customers.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "customer_id": ["c1", "c2"],
                "ts": ["2024-01-06T09:00:00Z", "2024-01-11"],  # text timestamps in Parquet
                "event": ["nps", "session"],
                "value": pa.array([9, None], pa.int64()),
                "channel": ["email", "app"],
            }
        ),
        parquet_dir / "events.parquet",
    )

    from_parquet = load_tables(parquet_dir).tables

    for name in ("transactions", "customers", "events"):
        assert_frame_equal(getattr(from_parquet, name), getattr(from_csv, name))


def test_extra_columns_are_ignored_and_listed(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path, transactions="customer_id,store_id,ts,amount,note\nc1,s9,2024-01-01,5,hi\n"
    )

    result = load_tables(folder)

    assert list(result.tables.transactions.columns) == ["customer_id", "ts", "amount"]
    assert any("extra columns ignored: store_id, note" in p.message for p in result.report.infos)


def test_columns_come_in_contract_order_and_a_bom_header_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "transactions.csv").write_bytes(
        "\ufeffamount, ts, customer_id\n5,2024-01-01,c1\n".encode()
    )

    frame = load_tables(folder).tables.transactions

    assert list(frame.columns) == ["customer_id", "ts", "amount"]
    assert frame["customer_id"].tolist() == ["c1"]


def test_a_header_only_transactions_table_is_an_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path, transactions="customer_id,ts,amount\n\n")

    (problem,) = _errors(folder)

    assert problem.message == "the table has no rows"
    assert problem.path == str(folder / "transactions.csv")
    assert not validate_folder(folder).ok  # `vafa validate` fails too, not only the load


def test_a_header_only_optional_table_loads_empty_with_a_warning(tmp_path: Path) -> None:
    result = load_tables(_folder(tmp_path, events="customer_id,ts,event\n"))

    assert result.tables.events is not None and result.tables.events.empty
    assert result.tables.events["ts"].dtype == "datetime64[us]"
    assert [p.message for p in result.report.warnings] == ["the table has no rows"]


def test_transactions_all_set_aside_in_quarantine_are_an_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path, transactions="customer_id,ts,amount\nc1,someday,1\n")

    with pytest.raises(DataValidationError, match="no transaction left to score"):
        load_tables(folder, quarantine_dir=tmp_path / "quarantine")


def test_optional_tables_absent_are_none(tmp_path: Path) -> None:
    result = load_tables(_folder(tmp_path))

    assert result.tables.customers is None
    assert result.tables.events is None
    assert result.tables.subscriptions is None
    assert {p.table for p in result.report.infos if "absent" in p.message} == {
        "customers",
        "events",
        "subscriptions",
    }


# --- problems in files --------------------------------------------------------------------------


def test_every_violation_is_collected_with_counts_and_first_rows(tmp_path: Path) -> None:
    bad_lines = "".join(f"c{i},not-a-date,{i}\n" for i in range(8))
    folder = _folder(
        tmp_path,
        transactions="customer_id,ts,amount\n" + bad_lines + ",2024-01-01,x\n",
        events="customer_id,ts,event,value\nc1,2024-01-01,nps,12\n",
    )

    with pytest.raises(DataValidationError) as caught:
        load_tables(folder)

    error = caught.value
    kinds = {(p.table, p.column, p.message.split(" (")[0]) for p in error.problems}
    assert kinds == {
        ("transactions", "ts", "unparsable timestamp"),
        ("transactions", "customer_id", "missing customer_id"),
        ("transactions", "amount", "unparsable number"),
        ("events", "value", "'nps' score outside 0-10"),
    }
    ts_problem = next(p for p in error.problems if p.column == "ts")
    assert ts_problem.n_rows == 8
    assert ts_problem.rows == (2, 3, 4, 5, 6)  # the first few only
    assert "8 rows" in str(error) and ", ..." in str(error)
    assert str(error) == error.report.render()


def test_blank_lines_are_skipped_without_shifting_line_numbers(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path, transactions="customer_id,ts,amount\nc1,2024-01-01,1\n\nc2,bad,2\n\n"
    )

    problems = _errors(folder)

    assert problems[0].rows == (4,)
    report = validate_folder(folder)
    assert any(p.message == "blank lines skipped" and p.n_rows == 2 for p in report.infos)


@pytest.mark.parametrize(
    ("files", "needle"),
    [
        pytest.param(
            {"customers.csv": CUSTOMERS_CSV},
            "missing required table 'transactions'",
            id="no-transactions",
        ),
        pytest.param(
            {"transactions.csv": "customer_id,amount\nc1,1\n"},
            "column 'ts': missing required column",
            id="no-ts",
        ),
        pytest.param(
            {"transactions.csv": "customer_id,TS,amount\nc1,2024-01-01,1\n"},
            "found 'TS'",
            id="case-hint",
        ),
        pytest.param(
            {"transactions.csv": TRANSACTIONS_CSV, "transactions.parquet": ""},
            "both transactions.parquet and transactions.csv exist",
            id="both-formats",
        ),
        pytest.param(
            {"transactions.csv": "customer_id,ts,amount\nc1,2024-01-01,1,9\n"},
            "malformed CSV lines",
            id="malformed",
        ),
        pytest.param({"transactions.csv": ""}, "the file is empty", id="empty-file"),
        pytest.param(
            {"transactions.parquet": "not parquet"}, "cannot read the file", id="bad-parquet"
        ),
        pytest.param(
            {"transactions.xlsx": "x"},
            "found transactions.xlsx: only .parquet and .csv are read",
            id="other-format",
        ),
    ],
)
def test_table_and_column_errors_raise_even_with_quarantine(
    tmp_path: Path, files: dict[str, str], needle: str
) -> None:
    folder = tmp_path / "data"
    for name, text in files.items():
        _write(folder, name, text)

    with pytest.raises(DataValidationError, match="INVALID") as caught:
        load_tables(folder, quarantine_dir=tmp_path / "quarantine")

    assert needle in str(caught.value)
    assert not (tmp_path / "quarantine").exists()


def test_a_csv_file_that_is_not_utf8_gets_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "transactions.csv").write_bytes(
        "customer_id,ts,amount\nJosé,2024-01-01,1\n".encode("latin-1")
    )

    (problem,) = _errors(folder)

    assert "not UTF-8" in problem.message
    assert problem.path == str(folder / "transactions.csv")


def test_malformed_csv_lines_are_listed_with_line_numbers(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path, transactions="customer_id,ts,amount\nc1,2024-01-01,1\nc2,2024-01-01,1,9\nc3\n"
    )

    (problem,) = _errors(folder)

    assert problem.n_rows == 2
    assert problem.rows == (3, 4)


def test_missing_data_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="data folder not found"):
        load_tables(tmp_path / "nowhere")


def test_validate_folder_reports_without_raising(tmp_path: Path) -> None:
    folder = _folder(tmp_path, transactions="customer_id,ts,amount\nc1,2024-01-01,x\n")

    report = validate_folder(folder)

    assert not report.ok
    assert report.row_counts == {"transactions": 1}
    assert "unparsable number" in report.render()


# --- quarantine ---------------------------------------------------------------------------------


def test_quarantine_sets_bad_rows_aside_and_loads_the_rest(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        transactions=(
            "customer_id,ts,amount,extra\n"
            "c1,2024-01-01,1,a\n"
            "c2,someday,oops,b\n"
            ",2024-01-02,3,c\n"
            "c3,2024-01-03,4,d\n"
        ),
        events="customer_id,ts,event,value\nc1,2024-01-01,nps,42\nc1,2024-01-01,nps,7\n",
    )
    quarantine = tmp_path / "quarantine"

    result = load_tables(folder, quarantine_dir=quarantine)

    assert result.tables.transactions["customer_id"].tolist() == ["c1", "c3"]
    assert result.tables.events is not None and result.tables.events["value"].tolist() == [7.0]
    report = result.report
    assert report.ok
    assert report.quarantined == {"transactions": 2, "events": 1}
    assert report.quarantine_files["transactions"] == str(quarantine / "transactions.csv")
    assert all(p.quarantined for p in report.warnings)
    assert "2 rows quarantined" in report.render()
    saved = pd.read_csv(quarantine / "transactions.csv", dtype=str, keep_default_na=False)
    expected = pd.DataFrame(
        {
            "source_row": ["3", "4"],
            "problem": [
                "ts: " + REASON_TIMESTAMP + "; amount: unparsable number",
                "customer_id: missing customer_id",
            ],
            "customer_id": ["c2", ""],
            "ts": ["someday", "2024-01-02"],
            "amount": ["oops", "3"],
        }
    )
    assert_frame_equal(saved, expected, check_dtype=False)
    assert (quarantine / "events.csv").exists()
    assert not (quarantine / "customers.csv").exists()


def test_quarantine_folder_must_differ_from_data_folder(tmp_path: Path) -> None:
    folder = _folder(tmp_path)

    with pytest.raises(ValueError, match="quarantine folder"):
        load_tables(folder, quarantine_dir=folder)


# --- writing ------------------------------------------------------------------------------------


def _sample_tables() -> Tables:
    transactions = pd.DataFrame(
        {
            "customer_id": _str_series(["c1", "c2", "c2"]),
            "ts": _ts(["2024-01-01T10:00:00.123456", "2024-02-01", "2024-02-01"]),
            "amount": [10.1, -0.1, 1 / 3],
            "order_id": _str_series(["o1", None, 'o"2,x']),
            "margin": [np.nan, 1.0, 2.5],
        }
    )
    customers = pd.DataFrame(
        {"customer_id": _str_series(["c1", "c2"]), "signup_ts": _ts(["2023-01-01", None])}
    )
    events = pd.DataFrame(
        {
            "customer_id": _str_series(["c1"]),
            "ts": _ts(["2024-01-03T00:00:01"]),
            "event": _str_series(["csat"]),
            "value": [4.0],
        }
    )
    return Tables(transactions, customers, events)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_write_tables_round_trips_through_load_tables(tmp_path: Path, fmt: io.TableFormat) -> None:
    tables = _sample_tables()

    written = write_tables(tables, tmp_path / "out", fmt)
    loaded = load_tables(tmp_path / "out").tables

    assert set(written) == {"transactions", "customers", "events"}
    assert written["events"] == tmp_path / "out" / f"events.{fmt}"
    for name in ("transactions", "customers", "events"):
        assert_frame_equal(getattr(loaded, name), getattr(tables, name))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_shared_shop_round_trips(tmp_path: Path, shop: Tables, fmt: io.TableFormat) -> None:
    write_tables(shop, tmp_path, fmt)

    result = load_tables(tmp_path)

    for name in ("transactions", "customers", "events"):
        assert_frame_equal(getattr(result.tables, name), getattr(shop, name))
    assert any("wish list (1)" in p.message for p in result.report.infos)


def test_write_tables_leaves_exactly_the_written_tables(tmp_path: Path) -> None:
    write_tables(_sample_tables(), tmp_path, "csv")
    (tmp_path / "notes.txt").write_text("kept")

    write_tables(replace(_sample_tables(), events=None), tmp_path, "parquet")

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "customers.parquet",
        "notes.txt",
        "transactions.parquet",
    ]


def test_write_frame_csv_uses_iso_timestamps(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "day": _ts(["2024-05-01", None]),
            "moment": _ts(["2024-05-01T13:45:00", "2024-05-02T00:00:00.5"]),
            "zoned": pd.to_datetime(
                ["2024-05-01T15:45:00+02:00", "2024-05-01T00:00:00Z"], utc=True
            ),
        }
    )

    path = write_frame(frame, tmp_path / "nested" / "deeper" / "frame.csv")

    # Each column as short as loses nothing; missing stays empty.
    assert path.read_text().splitlines() == [
        '"day","moment","zoned"',
        '"2024-05-01","2024-05-01T13:45:00.000","2024-05-01T13:45:00Z"',
        ',"2024-05-02T00:00:00.500","2024-05-01T00:00:00Z"',
    ]


def test_write_frame_csv_escapes_text_a_spreadsheet_would_run(tmp_path: Path) -> None:
    ids = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "\tx", "\rx", "c1", None]
    frame = pd.DataFrame(
        {
            "customer_id": _str_series(ids),
            "segment": pd.Categorical(["=a", "b", "b", "b", "b", "b", "b", "b"]),
            "amount": [-1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],  # numbers stay numbers
        }
    )

    write_frame(frame, tmp_path / "scores.csv")
    write_frame(frame, tmp_path / "scores.parquet")

    read = pd.read_csv(tmp_path / "scores.csv", dtype=str, keep_default_na=False)
    expected = [f"'{v}" for v in ids[:6]] + ["c1", ""]
    assert read["customer_id"].tolist() == expected
    assert read["segment"].tolist()[:2] == ["'=a", "b"]
    assert read["amount"].tolist()[0] == "-1"
    assert pd.read_parquet(tmp_path / "scores.parquet")["customer_id"].tolist()[:3] == ids[:3]


def test_write_tables_csv_keeps_formula_like_values_for_the_loader(tmp_path: Path) -> None:
    tables = _sample_tables()
    tables.transactions["order_id"] = _str_series(["=1+1", "-o2", "@o3"])

    write_tables(tables, tmp_path / "out", "csv")

    loaded = load_tables(tmp_path / "out").tables.transactions
    assert loaded["order_id"].tolist() == ["=1+1", "-o2", "@o3"]


def test_write_frame_keeps_named_index_and_leaves_input_alone(tmp_path: Path) -> None:
    frame = pd.DataFrame({"score": [0.5, 0.25]}, index=pd.Index(["c1", "c2"], name="customer_id"))
    before = frame.copy()

    write_frame(frame, tmp_path / "scores.parquet")

    assert_frame_equal(frame, before)
    assert pq.read_table(tmp_path / "scores.parquet").column_names == ["customer_id", "score"]


def test_write_frame_rejects_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.parquet or \.csv"):
        write_frame(pd.DataFrame({"a": [1]}), tmp_path / "frame.xlsx")


@pytest.mark.parametrize("name", ["frame.parquet", "frame.csv"])
def test_write_frame_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    target = tmp_path / name
    target.write_text("previous content")

    def fail_midway(table: pa.Table, where: object, *args: object, **kwargs: object) -> None:
        Path(str(where)).write_text("partial")
        raise OSError("disk full")

    monkeypatch.setattr(io.pq, "write_table", fail_midway)
    monkeypatch.setattr(io.pacsv, "write_csv", fail_midway)

    with pytest.raises(OSError, match="disk full"):
        write_frame(pd.DataFrame({"a": [1.0]}), target)

    assert target.read_text() == "previous content"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_categorical_text_column_with_missing_values_writes_as_csv(tmp_path: Path) -> None:
    """The scores' categoricals (a subscriber's plan) may be missing: escaping keeps them."""
    from features.io import write_frame

    frame = pd.DataFrame(
        {"customer_id": ["a", "b", "c"], "plan": pd.Categorical(["pro", None, "=cmd"])}
    )
    path = write_frame(frame, tmp_path / "scores.csv")
    read = pd.read_csv(path, keep_default_na=False)
    assert read["plan"].tolist() == ["pro", "", "'=cmd"]
