"""The dashboard's figures on hand-made scores, its run folders, trend, data path and command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal
from typer.testing import CliRunner

from features.build import build_features
from features.io import write_tables
from features.schema import Tables
from features.synthetic import generate_tables
from serving.report import (
    ReportError,
    build_dashboard,
    equity_share,
    headline,
    main_category,
    nps,
    render_html,
    repeat_purchase_rate,
    retention_rate,
    retention_rates,
    segment_value,
    top_share,
    vips_at_risk,
    write_report,
)
from serving.runs import summarise
from tests.factories import frame, ts


def scores_frame(**overrides: object) -> pd.DataFrame:
    """Four customers with round numbers: equity 1000, value at risk 50+100+150+0 = 300."""
    columns: dict[str, object] = {
        "customer_id": ["a", "b", "c", "d"],
        "as_of": pd.Timestamp("2024-06-01"),
        "churn_probability": [0.5, 0.25, 0.5, 0.0],
        "clv": [100.0, 400.0, 300.0, 200.0],
        "segment": ["at_risk", "vip", "at_risk", "loyal"],
        "value_tier": ["mid", "high", "high", "mid"],
        "lifecycle_stage": ["active", "active", "lapsed", "new"],
        "recommended_action": ["call", "no_action", "email", "no_action"],
        "reasons": ["late", "", "no content", ""],
        "model_version": "3",
    }
    columns.update(overrides)
    scores = pd.DataFrame(columns)
    scores["value_at_risk"] = scores["churn_probability"] * scores["clv"]
    return scores


def write_run(
    root: Path, as_of: str, scores: pd.DataFrame, summary: dict[str, object] | None = None
) -> Path:
    folder = root / f"as_of={as_of}"
    folder.mkdir(parents=True)
    scores.assign(as_of=pd.Timestamp(as_of)).to_parquet(folder / "scores.parquet")
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


# --- figures --------------------------------------------------------------------------------------


def test_headline_equity_is_the_sum_of_clv_and_value_at_risk_the_sum_of_risk_x_clv() -> None:
    scores = scores_frame()
    before = scores.copy()
    figures = headline(scores, summarise(scores, {}), market_value=4000.0)
    assert figures["customers"] == 4
    assert figures["customer_equity"] == pytest.approx(1000.0)
    assert figures["value_at_risk"] == pytest.approx(300.0)
    assert figures["value_at_risk_share"] == pytest.approx(0.3)
    assert figures["expected_churn_rate"] == pytest.approx(1.25 / 4)
    assert figures["mean_clv"] == pytest.approx(250.0)
    assert figures["median_clv"] == pytest.approx(250.0)
    assert figures["customer_equity_share"] == pytest.approx(0.25)
    assert figures["active_customers"] == 3  # the lapsed one is not active
    assert figures["with_action"] == 2
    assert figures["nps"] is None and figures["repeat_purchase_rate"] is None
    assert_frame_equal(scores, before)


def test_headline_survey_and_support_figures() -> None:
    scores = scores_frame(
        nps_last=[10.0, 3.0, 8.0, 0.0],
        days_since_nps=[5.0, 10.0, 100.0, 400.0],  # d's answer is too old to count
        csat_last=[5.0, 2.0, np.nan, 4.0],
        days_since_csat=[1.0, 2.0, np.nan, 3.0],
        n_orders=[1.0, 3.0, 0.0, 2.0],
        support_ticket_90d=[1.0, 2.0, 0.0, np.nan],
        unresolved_tickets=[0.0, 1.0, 2.0, 0.0],
        complaint_90d=[0.0, 1.0, 0.0, 0.0],
    )
    figures = headline(scores, summarise(scores, {}))
    assert figures["nps"] == pytest.approx(100 * (1 / 3 - 1 / 3))
    assert figures["nps_answers"] == 3
    assert figures["detractors_to_follow_up"] == 1  # b: 3, ten days ago
    assert figures["csat_satisfied"] == pytest.approx(2 / 3)
    assert figures["csat_mean"] == pytest.approx(11 / 3)
    assert figures["repeat_purchase_rate"] == pytest.approx(2 / 3)
    assert figures["support_tickets_90d"] == 3
    assert figures["unresolved_tickets"] == 3
    assert figures["customers_with_unresolved"] == 2
    assert figures["complaints_90d"] == 1


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([9, 10, 7, 0], 25.0),
        ([7, 8], 0.0),
        ([0, 6, 6, 9], -50.0),
        ([10], 100.0),
        ([np.nan, 9.0], 100.0),
        ([], None),
    ],
)
def test_nps(answers: list[float], expected: float | None) -> None:
    result = nps(pd.Series(answers, dtype="float64"))
    assert result == (None if expected is None else pytest.approx(expected))


def test_repeat_purchase_rate_counts_buyers_only() -> None:
    assert repeat_purchase_rate(pd.Series([0.0, 1.0, 2.0, 5.0])) == pytest.approx(2 / 3)
    assert repeat_purchase_rate(pd.Series([0.0])) is None


def test_retention_rate() -> None:
    previous = pd.Series({"a": 1.0, "b": 0.0, "c": 2.0})
    current = pd.Series({"a": 0.0, "c": 1.0, "d": 3.0})
    assert retention_rate(previous, current) == pytest.approx(0.5)  # a left, c stayed
    assert retention_rate(pd.Series({"a": 0.0}), current) is None


def test_retention_rates_from_transactions() -> None:
    # as_of 2024-04-01: the month before is [03-02, 04-01), the one before that [02-01, 03-02).
    transactions = frame(
        customer_id=["a", "a", "b", "c", "c", "d"],
        ts=ts("2024-02-10", "2024-03-20", "2024-02-15", "2024-02-20", "2024-03-05", "2024-03-25"),
        amount=[10.0, 10.0, 5.0, 1.0, -1.0, 3.0],
    )
    rates = retention_rates(Tables(transactions), pd.Timestamp("2024-04-01"))
    # a bought in both months; b only before; c's later row is a refund, not a purchase.
    assert rates["retention_monthly"] == pytest.approx(1 / 3)
    assert rates["churn_monthly"] == pytest.approx(2 / 3)
    # the quarter before [2024-01-02, 2024-04-01) is empty: nobody to retain.
    assert rates["retention_quarterly"] is None and rates["churn_quarterly"] is None


@pytest.mark.parametrize(
    ("equity", "market", "expected"), [(500.0, 2000.0, 0.25), (5.0, None, None), (5.0, 0.0, None)]
)
def test_equity_share(equity: float, market: float | None, expected: float | None) -> None:
    assert equity_share(equity, market) == expected


def test_top_share() -> None:
    clv = pd.Series([10.0, 0.0, 30.0, 60.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert top_share(clv, 0.1) == pytest.approx(0.6)
    assert top_share(clv, 0.2) == pytest.approx(0.9)
    assert top_share(pd.Series([0.0, 0.0]), 0.2) is None


def test_segment_value_hand_computed() -> None:
    scores = scores_frame(customer_type=["student", "parent", None, "student"])
    before = scores.copy()
    table = segment_value(scores, "customer_type")
    expected = pd.DataFrame(
        {
            "group": ["parent", "student", "unknown"],
            "customers": [1, 2, 1],
            "customer_share": [0.25, 0.5, 0.25],
            "total_clv": [400.0, 300.0, 300.0],
            "mean_clv": [400.0, 150.0, 300.0],
            "equity_share": [0.4, 0.3, 0.3],
            "value_at_risk": [100.0, 50.0, 150.0],
            "expected_churn_rate": [0.25, 0.25, 0.5],
        }
    )
    assert_frame_equal(table, expected, check_dtype=False)
    assert_frame_equal(scores, before)


def test_segment_value_adds_nps_per_group() -> None:
    scores = scores_frame(nps_last=[10.0, 0.0, np.nan, 9.0])
    table = segment_value(scores, "segment").set_index("group")
    assert table.loc["loyal", "nps"] == 100.0
    assert table.loc["vip", "nps"] == -100.0
    assert table.loc["at_risk", "nps"] == 100.0  # a's 10; c never answered


def test_vips_at_risk_are_high_value_by_value_at_risk() -> None:
    top = vips_at_risk(scores_frame(), n=5)
    assert top["customer_id"].tolist() == ["c", "b"]  # 150 then 100 at risk; a, d are mid value
    assert {"reasons", "recommended_action", "clv", "churn_probability"} <= set(top.columns)
    assert vips_at_risk(scores_frame(), n=1)["customer_id"].tolist() == ["c"]


def test_vips_at_risk_leave_out_the_low_risk_tier() -> None:
    scores = scores_frame(risk_tier=["high", "low", "mid", "low"])
    assert vips_at_risk(scores)["customer_id"].tolist() == ["c"]


def test_vips_without_value_tier_are_the_top_fifth_by_clv() -> None:
    scores = scores_frame().drop(columns=["value_tier"])
    assert vips_at_risk(scores)["customer_id"].tolist() == ["b"]


def test_main_category_by_purchase_value_before_as_of() -> None:
    transactions = frame(
        customer_id=["a", "a", "a", "a", "b", "b", "c"],
        ts=ts(
            "2024-01-01",
            "2024-01-02",
            "2024-01-03",
            "2024-03-01",
            "2024-01-01",
            "2024-01-02",
            "2024-01-05",
        ),
        amount=[10.0, 8.0, -50.0, 99.0, 5.0, 5.0, 7.0],
        category=["books", "toys", "books", "toys", "toys", "books", None],
    )
    # a: books 10 vs toys 8 (the refund and the March row do not count); b: a tie goes to
    # the first name; c: no category.
    expected = pd.Series({"a": "books", "b": "books"}, name="main_category", dtype="str")
    result = main_category(transactions, pd.Timestamp("2024-02-01"))
    assert_series_equal(result, expected, check_index_type=False, check_names=False)
    assert result.name == "main_category"


# --- run folders and the page ---------------------------------------------------------------------


def test_bad_scores_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="is not a folder"):
        build_dashboard(tmp_path / "absent")
    with pytest.raises(ReportError, match="no runs under"):
        build_dashboard(tmp_path)
    write_run(tmp_path, "2024-06-01", scores_frame().drop(columns=["clv"]))
    with pytest.raises(ReportError, match=r"lacks the score columns \['clv'\]"):
        build_dashboard(tmp_path)


def test_corrupt_scores_file_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "as_of=2024-06-01"
    folder.mkdir()
    (folder / "scores.parquet").write_text("not parquet")
    with pytest.raises(ReportError, match="cannot read"):
        build_dashboard(tmp_path)


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
    assert trend["expected_churn_rate"].tolist() == pytest.approx([0.3125, 0.3125, 1.0])
    assert dashboard.run.as_of == pd.Timestamp("2024-08-01")
    assert dashboard.summary["note"] == "kept"
    assert dashboard.headline["value_at_risk"] == pytest.approx(1000.0)

    page = render_html(dashboard)
    trend_section = page[page.index('id="trend"') :]
    assert "<svg" in trend_section and "One run so far" not in trend_section
    for day in ("2024-06-01", "2024-07-01", "2024-08-01"):
        assert day in trend_section


def test_one_run_says_the_trend_needs_two(tmp_path: Path) -> None:
    write_run(tmp_path, "2024-06-01", scores_frame())
    page = render_html(build_dashboard(tmp_path))
    assert "One run so far" in page


def test_without_data_sections_say_not_in_this_data(tmp_path: Path) -> None:
    write_run(tmp_path, "2024-06-01", scores_frame())
    page = render_html(build_dashboard(tmp_path))
    for what in ("NPS", "CSAT", "Support tickets", "Product category (most spend)"):
        assert f"{what}: not in this data." in page
    assert "give --market-value" in page
    # Self-contained: no URL to fetch, no script to run.
    assert "<script" not in page and not re.search(r"(src|href)=\"?https?:", page)


def test_changes_from_the_summary_are_shown(tmp_path: Path) -> None:
    scores = scores_frame()
    changes = {
        "previous_as_of": "2024-05-01",
        "changed_actions": 7,
        "new_customers": 2,
        "dropped_customers": 1,
        "transitions": {"no_action -> call": 5, "call -> email": 2},
    }
    write_run(tmp_path, "2024-06-01", scores, {**summarise(scores, {}), "changes": changes})
    page = render_html(build_dashboard(tmp_path))
    assert "Since the previous run (2024-05-01): 7 customers" in page
    assert "no_action -&gt; call" in page

    first = {"previous_as_of": None, "changed_actions": None, "new_customers": None}
    write_run(tmp_path, "2024-07-01", scores, {**summarise(scores, {}), "changes": first})
    assert "No earlier run to compare the actions with." in render_html(build_dashboard(tmp_path))


def test_customer_text_is_escaped(tmp_path: Path) -> None:
    scores = scores_frame(
        reasons=["<b>late</b>", "", "x", ""],
        customer_id=["<a>", "b", "c", "d"],
        value_tier=["high", "high", "high", "mid"],
    )
    write_run(tmp_path, "2024-06-01", scores)
    page = render_html(build_dashboard(tmp_path, top=10))
    assert "&lt;b&gt;late&lt;/b&gt;" in page and "&lt;a&gt;" in page
    assert "<b>late</b>" not in page


def make_runs(root: Path, customers: int = 300) -> tuple[Path, Path]:
    """Generated data and two runs of made-up scores for its customers (no model needed)."""
    data = root / "data"
    tables = generate_tables(customers, seed=5, end="2026-11-01")
    write_tables(tables, data)
    rng = np.random.default_rng(0)
    for as_of in ("2026-09-01", "2026-11-01"):
        ids = build_features(tables, as_of)["customer_id"]
        churn = rng.uniform(0, 1, len(ids))
        clv = rng.gamma(1.0, 100.0, len(ids))
        write_run(
            root / "scores",
            as_of,
            pd.DataFrame(
                {
                    "customer_id": ids,
                    "churn_probability": churn,
                    "clv": clv,
                    "value_at_risk": churn * clv,
                    "segment": rng.choice(["vip", "at_risk", "loyal"], len(ids)),
                    "value_tier": rng.choice(["low", "mid", "high"], len(ids)),
                    "recommended_action": rng.choice(["call", "no_action"], len(ids)),
                    "reasons": "recency is long",
                    "model_version": "1",
                }
            ),
        )
    return root / "scores", data


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
    from vafa.cli import app

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
    import serving.report

    monkeypatch.setattr(serving.report, "TREND_DATA_RUNS", 1)
    scores_dir, data = shop_run
    trend = build_dashboard(scores_dir, data).trend
    assert trend["retention_quarterly"].isna().tolist() == [True, False]
    assert trend["customer_equity"].notna().all()
