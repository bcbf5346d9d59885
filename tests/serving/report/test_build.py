"""The dashboard over run folders: the trend, the data path, the written file and the command."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import serving.report.build
from serving.report.build import build_dashboard, write_report
from serving.report.render import render_html
from serving.runs import summarise
from tests.serving.report.factories import make_runs, scores_frame, write_run


def test_trend_over_runs_in_date_order_with_stored_summaries(tmp_path: Path) -> None:
    first = scores_frame()
    second = scores_frame(clv=[200.0, 400.0, 300.0, 600.0])
    third = scores_frame(churn_probability=[1.0, 1.0, 1.0, 1.0])
    write_run(tmp_path, "2024-06-01", first)  # no summary: the batch's figures are recomputed
    write_run(tmp_path, "2024-08-01", third, {**summarise(third, {}), "note": "kept"})
    write_run(tmp_path, "2024-07-01", second, summarise(second, {}))
    (tmp_path / "as_of=2024-09-01").mkdir()  # a run without scores (half-written) is skipped
    (tmp_path / "report.html").write_text("an older dashboard")

    dashboard = build_dashboard(tmp_path)
    trend = dashboard.trend
    assert trend["as_of"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-06-01",
        "2024-07-01",
        "2024-08-01",
    ]
    assert trend["customer_equity"].tolist() == pytest.approx([1000.0, 1500.0, 1000.0])
    assert trend["value_at_risk"].tolist() == pytest.approx([300.0, 350.0, 1000.0])
    assert trend["expected_churn_rate"].tolist() == pytest.approx([0.25, 0.25, 1.0])
    assert trend["expected_churn_rate_all"].tolist() == pytest.approx([0.3125, 0.3125, 1.0])
    assert dashboard.run.as_of == pd.Timestamp("2024-08-01")
    assert dashboard.summary["note"] == "kept"
    assert dashboard.headline["value_at_risk"] == pytest.approx(1000.0)

    page = render_html(dashboard)
    trend_section = page[page.index('id="trend"') :]
    assert "<svg" in trend_section and "One run so far" not in trend_section
    for day in ("2024-06-01", "2024-07-01", "2024-08-01"):
        assert day in trend_section


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_runs(tmp_path_factory.mktemp("report-data"))


def test_with_data_every_section_has_its_figures(shop_run: tuple[Path, Path]) -> None:
    scores_dir, data = shop_run
    dashboard = build_dashboard(scores_dir, data, market_value=1e6)
    h = dashboard.headline
    for key in ("retention_monthly", "retention_quarterly", "repeat_purchase_rate", "nps"):
        assert h[key] is not None and np.isfinite(h[key]), key
    assert 0 <= h["retention_quarterly"] <= 1 and -100 <= h["nps"] <= 100
    assert h["customer_equity_share"] == pytest.approx(h["customer_equity"] / 1e6)
    assert set(dashboard.groups) == {
        "segment",
        "customer_type",
        "main_category",
        "dominant_channel",
    }
    for table in dashboard.groups.values():
        assert table["total_clv"].sum() == pytest.approx(h["customer_equity"])
        assert table["customers"].sum() == h["customers"]
    assert dashboard.trend["retention_quarterly"].notna().all()
    page = render_html(dashboard)
    assert re.findall(r"[^>]*not in this data\.", page) == [
        "Time to resolution and ticket topics: not in this data."
    ]


def test_write_report_is_atomic_and_replaces(tmp_path: Path, shop_run: tuple[Path, Path]) -> None:
    scores_dir, _ = shop_run
    out = tmp_path / "nested" / "report.html"
    written, _ = write_report(scores_dir, out)
    assert written == out and out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temporary left over


def test_report_command(tmp_path: Path, shop_run: tuple[Path, Path]) -> None:
    from vafa.cli.app import app

    scores_dir, data = shop_run
    runner = CliRunner()
    out = tmp_path / "dash.html"
    result = runner.invoke(
        app,
        ["report", "--scores", str(scores_dir), "--out", str(out), "--data", str(data)],
    )
    assert result.exit_code == 0, result.output
    assert str(out.resolve()) in result.output and "2 run(s)" in result.output
    assert "Customer equity" in out.read_text()

    empty = runner.invoke(app, ["report", "--scores", str(tmp_path), "--out", str(out)])
    assert empty.exit_code == 1 and "no runs under" in empty.output
    wrong = runner.invoke(app, ["report", "--scores", str(scores_dir), "--out", "x.pdf"])
    assert wrong.exit_code == 2
    assert runner.invoke(app, ["report", "--help"]).exit_code == 0


def test_data_figures_only_for_the_latest_runs(
    shop_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serving.report.build, "TREND_DATA_RUNS", 1)
    scores_dir, data = shop_run
    trend = build_dashboard(scores_dir, data).trend
    assert trend["retention_quarterly"].isna().tolist() == [True, False]
    assert trend["customer_equity"].notna().all()


def test_report_command_warns_of_a_flagged_run(tmp_path: Path) -> None:
    from vafa.cli.app import app

    scores = scores_frame()
    flagged = {**summarise(scores, {}), "freshness": {"flags": ["events: table missing"]}}
    write_run(tmp_path, "2024-06-01", scores, flagged)
    result = CliRunner().invoke(app, ["report", "--scores", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "warning: the latest run is flagged for stale: events: table missing" in result.output
    assert 'id="flags"' in (tmp_path / "report.html").read_text()
