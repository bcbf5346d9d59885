"""Dates and data folders a command refuses: exit 2 for a bad --as-of, 3 for bad data.

The commands run in this process through `vafa.cli.app.run`, the entry point, so exit codes and
messages are the user's; each is refused before any model is needed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

VALID = "customer_id,ts,amount\nc1,2026-01-05,10\nc2,2026-02-01,5\nc1,2026-03-01,7\n"
DATED = ("features", "score", "train", "backtest", "profiles")


def _folder(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _args(command: str, folder: Path, tmp_path: Path, *more: str) -> list[str]:
    """The command's arguments on a data folder, outputs under tmp_path."""
    out = {"features": ["--out", str(tmp_path / "f.csv")], "score": ["--out", str(tmp_path / "s")]}
    return [command, "--data", str(folder), *out.get(command, []), *more]


def _day(offset: int) -> str:
    return (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=offset)).isoformat()


# --- 23.2: only ISO 8601 dates ------------------------------------------------------------------


@pytest.mark.parametrize("command", DATED)
def test_a_date_that_is_not_iso_8601_is_refused_not_guessed(
    vafa: Any, tmp_path: Path, command: str
) -> None:
    folder = _folder(tmp_path, **{"transactions.csv": VALID})

    done = vafa(*_args(command, folder, tmp_path, "--as-of", "01/11/2026"))

    assert done.code == 2, done.err
    assert "--as-of" in done.err and "not an ISO 8601 date" in done.err and "01/11/2026" in done.err
    assert not (tmp_path / "f.csv").exists() and not (tmp_path / "s").exists()


def test_generate_end_is_iso_8601_too(vafa: Any, tmp_path: Path) -> None:
    done = vafa("generate", "--out", str(tmp_path / "g"), "--end", "1 Nov 2026")

    assert done.code == 2
    assert "--end" in done.err and "not an ISO 8601 date" in done.err
    assert not (tmp_path / "g").exists()


# --- 23.1: no as-of later than tomorrow unless forced -------------------------------------------


@pytest.mark.parametrize("command", DATED)
def test_an_as_of_later_than_tomorrow_is_refused(vafa: Any, tmp_path: Path, command: str) -> None:
    folder = _folder(tmp_path, **{"transactions.csv": VALID})

    done = vafa(*_args(command, folder, tmp_path, "--as-of", _day(2)))

    assert done.code == 2, done.err
    assert "later than tomorrow" in done.err and "--allow-future-as-of" in done.err
    assert "scores store" in done.err  # says why
    assert not (tmp_path / "f.csv").exists() and not (tmp_path / "s").exists()


def test_tomorrow_is_accepted_and_later_only_when_forced(vafa: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path, **{"transactions.csv": VALID})

    tomorrow = vafa(*_args("features", folder, tmp_path, "--as-of", _day(1)))
    forced = vafa(
        *_args("features", folder, tmp_path, "--as-of", "2031-01-01", "--allow-future-as-of")
    )

    assert tomorrow.code == 0, tomorrow.err
    assert forced.code == 0, forced.err
    assert "as of 2031-01-01" in forced.out


# --- 24.2: a row dated 2062 does not move the default as-of -------------------------------------


def test_a_row_dated_2062_is_flagged_and_the_default_as_of_follows_the_rest(
    vafa: Any, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, **{"transactions.csv": VALID + "c3,2062-10-30,1\n"})

    checked = vafa("validate", "--data", str(folder))
    built = vafa(*_args("features", folder, tmp_path))

    assert checked.code == 0
    assert (
        "column 'ts': dated after tomorrow" in checked.out and "line 5 '2062-10-30'" in checked.out
    )
    assert built.code == 0, built.err
    assert "as of 2026-03-02" in built.out  # the day after the last transaction not in the future


# --- 23.3: nothing to score is a data error -----------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "features", "score", "train"])
def test_a_header_only_transactions_file_is_a_data_error(
    vafa: Any, tmp_path: Path, command: str
) -> None:
    folder = _folder(tmp_path, **{"transactions.csv": "customer_id,ts,amount\n"})

    done = vafa(*_args(command, folder, tmp_path))

    assert done.code == 3, done.err
    report = done.out + done.err
    assert f"{folder / 'transactions.csv'}: the table has no rows" in report
    assert "NaTType" not in report
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("command", ["features", "score", "train", "profiles"])
def test_an_as_of_before_any_transaction_is_a_data_error(
    vafa: Any, tmp_path: Path, command: str
) -> None:
    folder = _folder(tmp_path, **{"transactions.csv": VALID})

    done = vafa(*_args(command, folder, tmp_path, "--as-of", "2025-06-01"))

    assert done.code == 3, done.err
    assert (
        f"{folder / 'transactions.csv'}, column 'ts': no transaction before the as-of" in done.err
    )
    assert not (tmp_path / "f.csv").exists()
    assert not (tmp_path / "s").exists()  # nothing published: no run folder, no "0 customers"


# --- 24.3: bad folders, each exit 3 naming file, column and rows --------------------------------


BAD_FOLDERS = {
    "semicolons": (
        {"transactions.csv": "customer_id;ts;amount\nc1;2026-01-01;5\n"},
        "transactions.csv, column 'customer_id': missing required column (the header seems "
        "separated by ';'",
    ),
    "no-customer-id": (
        {"transactions.csv": "id,ts,amount\nc1,2026-01-01,5\n"},
        "transactions.csv, column 'customer_id': missing required column",
    ),
    "no-contract-column": (
        {"transactions.csv": "id,date,value\nc1,2026-01-01,5\n"},
        "transactions.csv, column 'ts': missing required column",
    ),
    "year-2300": (
        {"transactions.csv": VALID + "c3,2300-01-01,5\n"},
        "transactions.csv, column 'ts': timestamp outside 1900-01-01 to 2261-12-31; 1 row: "
        "line 5 '2300-01-01'",
    ),
    "colliding-events": (
        {
            "transactions.csv": VALID,
            "events.csv": "customer_id,ts,event\nc1,2026-01-01,Email Open\n"
            "c1,2026-01-02,EMAIL-OPEN\nc2,2026-01-03,email_open\n",
        },
        "events.csv, column 'event': event names that become the same feature columns",
    ),
    "content-outside-the-contract": (
        {"transactions.csv": "customer_id,ts,amount,note\nc1,2026-01-01,5,\n,,,call back\n"},
        "transactions.csv, column 'customer_id': missing customer_id; 1 row: line 3",
    ),
    "id-too-long": (
        {"transactions.csv": VALID + f"{'x' * 256},2026-01-01,5\n"},
        "transactions.csv, column 'customer_id': customer_id longer than 255 characters",
    ),
    "id-with-nul": (
        {"transactions.csv": VALID + "c\x009,2026-01-01,5\n"},
        "transactions.csv, column 'customer_id': customer_id holds a NUL character; 1 row: line 5",
    ),
    "amount-1e308": (
        {"transactions.csv": VALID + "c3,2026-01-01,1e308\n"},
        "transactions.csv, column 'amount': number beyond +-1,000,000,000 (the contract's limit); "
        "1 row: line 5 '1e308'",
    ),
}


@pytest.mark.parametrize("command", ["validate", "features", "score"])
@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_a_bad_folder_exits_3_naming_file_column_and_rows(
    vafa: Any, tmp_path: Path, case: str, command: str
) -> None:
    files, needle = BAD_FOLDERS[case]
    folder = _folder(tmp_path, **files)

    done = vafa(*_args(command, folder, tmp_path))

    assert done.code == 3, done.err
    assert needle in (done.out if command == "validate" else done.err)
    assert not (tmp_path / "f.csv").exists() and not (tmp_path / "s").exists()


def test_ids_typed_differently_across_parquet_files_exit_3_naming_both(
    vafa: Any, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "data"
    folder.mkdir()
    ts = pa.array([dt.datetime(2026, 1, 1)] * 2, pa.timestamp("us"))
    pq.write_table(
        pa.table({"customer_id": [7, 8], "ts": ts, "amount": [1.0, 2.0]}),
        folder / "transactions.parquet",
    )
    pq.write_table(
        pa.table({"customer_id": ["007", "8"], "ts": ts, "event": ["session"] * 2}),
        folder / "events.parquet",
    )

    done = vafa(*_args("score", folder, tmp_path))

    assert done.code == 3
    assert f"{folder / 'events.parquet'}, column 'customer_id': customer_id is text" in done.err
    assert f"numbers in {folder / 'transactions.parquet'}" in done.err
    assert "row 1 '007'" in done.err


# --- 24.3: the run's summary records what was read and set aside --------------------------------


def test_score_gives_the_summary_input_and_quarantined_rows_per_table(
    vafa: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.batch.job

    folder = _folder(
        tmp_path,
        **{
            "transactions.csv": VALID + "c3,someday,5\n",
            "events.csv": "customer_id,ts,event\nc1,2026-01-01,session\n",
        },
    )
    seen: dict[str, Any] = {}

    def capture(*args: Any, extra: dict[str, Any], **kwargs: Any) -> None:
        seen.update(extra)
        raise RuntimeError("stop before scoring")

    monkeypatch.setattr(serving.batch.job, "score_with_champion", capture)

    done = vafa(*_args("score", folder, tmp_path, "--quarantine", str(tmp_path / "q")))

    assert "stop before scoring" in done.err
    assert seen["input_rows"] == {"transactions": 4, "events": 1}
    assert seen["quarantined_rows"] == {"transactions": 1, "events": 0}
