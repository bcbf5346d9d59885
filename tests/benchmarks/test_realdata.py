"""benchmarks/realdata.py: CDNOW converted, each window reported, a failed window named."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from benchmarks import realdata
from features.io import load_tables
from tests.training.predictions import backtest_result
from training.backtest import CHURN_ROWS, SPEND_ROWS
from training.comparison import POPULATIONS, paired_bootstrap, write_comparison

# Four customers in CDNOW's layout: two rows of one customer on one day are one order.
CDNOW_LIKE = [
    " customer_id  date number_of_cds  dollar_value",
    " 00001 19970101  1   11.77",
    " 00002 19970112  1   12.00",
    " 00002 19970112  5   77.00",
    " 00002 19971130  2   20.00",
    " 00003 19970102  2   20.76",
    " 00003 19980305  1   15.00",
    " 00004 19970301  1    0.00",
]


@pytest.fixture
def cdnow_like(tmp_path: Path) -> Path:
    path = tmp_path / "CDNOW_master.txt"
    path.write_bytes(("\r\n".join(CDNOW_LIKE) + "\r\n").encode())
    return path


def test_cdnow_becomes_a_data_folder_with_one_order_per_customer_and_day(
    cdnow_like: Path, tmp_path: Path
) -> None:
    written = realdata.convert(cdnow_like, tmp_path / "data")
    transactions = load_tables(tmp_path / "data").tables.transactions
    assert len(transactions) == len(written) == 7
    assert sorted(transactions["customer_id"].unique()) == ["00001", "00002", "00003", "00004"]
    same_day = transactions[transactions["customer_id"] == "00002"]["order_id"]
    assert same_day.tolist().count("00002-19970112") == 2 and same_day.nunique() == 2
    assert transactions["amount"].sum() == pytest.approx(156.53)


def test_the_command_of_a_window_backtests_as_of_1998_with_both_windows_equal() -> None:
    args = argparse.Namespace(trials=8, seed=42, bootstrap=1000)
    command = realdata.backtest_command(Path("d"), 120, Path("r/120.json"), args)
    text = " ".join(command[3:])
    assert text == (
        "backtest --data d --as-of 1998-01-01 --churn-window-days 120 --horizon-days 120 "
        "--trials 8 --seed 42 --bootstrap 1000 --out r/120.json"
    )


def test_every_window_is_reported_and_a_failed_one_is_named_with_exit_1(
    cdnow_like: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(realdata, "source_path", lambda: cdnow_like)
    predictions = backtest_result(n=1500, seed=3).predictions
    intervals = paired_bootstrap(
        predictions,
        {"churn": CHURN_ROWS, "spend": SPEND_ROWS},
        resamples=60,
        populations=POPULATIONS,
    )
    ran: list[tuple[int, int]] = []

    def runner(data: Path, window: int, out: Path) -> realdata.WindowRun:
        ran.append((window, len(load_tables(data).tables.transactions)))
        if window == 180:
            stderr = "INFO loading ...\nerror: too short for a 180-day churn window\n"
            return realdata.WindowRun(window, 1, "", stderr, 3.0, None)
        write_comparison(intervals, out, {"as_of": realdata.AS_OF, "resamples": 60})
        return realdata.WindowRun(window, 0, "tables", "", 5.0, out.read_text())

    kept = tmp_path / "kept"
    code = realdata.main(["--windows", "90", "180", "--out", str(kept)], runner=runner)
    output = capsys.readouterr().out
    assert code == 1
    assert ran == [(90, 7), (180, 7)]  # the failure did not stop the run
    assert "CDNOW from " in output and "4 customers" in output
    assert "=== 90-day churn window and horizon, as of 1998-01-01 === (5 s)" in output
    assert "churn: model - baseline on " in output and "60 paired bootstrap" in output
    assert "FAILED (exit 1) after 3 s:\n  INFO loading ...\n  error: too short" in output
    summary = output[output.index("=== summary") :]
    assert "the model beats every baseline:\n  90 days, churn: roc_auc, pr_auc, brier" in summary
    assert "failed windows: 180 days (exit 1)" in summary
    assert [p.name for p in kept.iterdir()] == ["90.json"]
    assert json.loads((kept / "90.json").read_text())["as_of"] == "1998-01-01"


@pytest.mark.slow
def test_a_cdnow_slice_backtests_end_to_end_in_a_subprocess(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = realdata.source_path().read_text().splitlines()
    header, body = rows[0], rows[1:]
    kept = [line for line in body if int(line.split()[0]) <= 3000]
    slice_path = tmp_path / "CDNOW_master.txt"
    slice_path.write_text("\n".join([header, *kept]) + "\n")
    monkeypatch.setattr(realdata, "source_path", lambda: slice_path)
    code = realdata.main(["--windows", "90", "--trials", "1", "--bootstrap", "50"])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "=== 90-day churn window and horizon" in output and "FAILED" not in output
    for baseline in ("recency", "bgnbd", "last_period", "bgnbd_gg"):
        assert f" {baseline} " in output
    assert "failed windows: none" in output
