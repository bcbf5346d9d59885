"""`vafa backtest`'s paired bootstrap intervals: printed after the tables, written with --out."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.io import write_tables
from features.synthetic import generate_tables
from tests.training.predictions import backtest_result
from training.backtest import CHURN_ROWS, SPEND_ROWS, BacktestResult
from vafa.cli.app import app

AS_OF = "2026-05-01"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shop") / "data"
    write_tables(generate_tables(120, seed=2), folder)
    return folder


@pytest.fixture
def graded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """The backtest's training is not under test: a result of generated predictions stands in."""
    calls: list[dict[str, object]] = []
    result = backtest_result(n=2000, seed=1)

    def run_backtest(*args: object, **kwargs: object) -> BacktestResult:
        calls.append({"args": args, **kwargs})
        return result

    monkeypatch.setattr("training.jobs.run_backtest", run_backtest)
    return calls


def backtest(data: Path, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["backtest", "--data", str(data), "--as-of", AS_OF, "--trials", "1", *options]
    )
    return result.exit_code, result.output


def test_backtest_prints_the_intervals_after_its_tables(
    data: Path, graded: list[dict[str, object]]
) -> None:
    code, output = backtest(data, "--bootstrap", "200")
    assert code == 0, output
    assert len(graded) == 1
    tables = output.index("spend over the horizon, all 2,000 customers")
    churn = output.index("churn: model - baseline on ")
    spend = output.index("spend: model - baseline on ")
    assert tables < churn < spend
    assert "200 paired bootstrap resamples" in output
    # The generated model knows each customer's true risk; the baselines know nothing.
    assert "  beats every baseline on: roc_auc, pr_auc, brier" in output
    assert "(the intervals over all customers too: --out FILE)" in output


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_backtest_writes_both_populations_with_out(
    data: Path, graded: list[dict[str, object]], tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"intervals{suffix}"
    code, output = backtest(data, "--bootstrap", "100", "--seed", "5", "--out", str(out))
    assert code == 0, output
    assert f"intervals and verdicts written to {out}" in output
    rows = 2 * (len(CHURN_ROWS) + len(SPEND_ROWS))  # one baseline each, two populations
    if suffix == ".json":
        document = json.loads(out.read_text())
        assert {k: document[k] for k in ("as_of", "churn_window_days", "resamples", "seed")} == {
            "as_of": AS_OF,
            "churn_window_days": 90,
            "resamples": 100,
            "seed": 5,
        }
        intervals = pd.DataFrame(document["intervals"])
        assert len(document["verdicts"]) == rows
    else:
        intervals = pd.read_csv(out)
        assert intervals["verdict"].notna().all()
        assert "beats every baseline" in set(intervals["verdict"])
    assert len(intervals) == rows
    assert set(intervals["population"]) == {"active", "all"}
    assert set(intervals["baseline"]) == {"recency", "last_period"}


def test_no_bootstrap_prints_the_tables_only(data: Path, graded: list[dict[str, object]]) -> None:
    code, output = backtest(data, "--bootstrap", "0")
    assert code == 0, output
    assert "spend over the horizon" in output and "paired bootstrap" not in output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--out", "intervals.txt"], "must end in .json, .csv, .parquet"),
        (["--bootstrap", "0", "--out", "intervals.json"], "give --bootstrap N >= 1"),
    ],
)
def test_a_bad_out_is_refused_before_any_training(
    data: Path, graded: list[dict[str, object]], options: list[str], message: str
) -> None:
    code, output = backtest(data, *options)
    assert code == 2 and message in output
    assert graded == []
