"""The page: its sections say what the data lacks, show the changes and escape customer text."""

from __future__ import annotations

import html
import re
from pathlib import Path

from serving.report.build import build_dashboard
from serving.report.render import render_html
from serving.runs import summarise
from tests.serving.report.factories import scores_frame, write_run


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


def _card(page: str, label: str) -> str:
    """The text of the headline card with this label."""
    start = page.index(f'<div class="label">{label}</div>')
    return html.unescape(
        re.sub(r"<[^>]+>", " ", page[start : page.index('<div class="kpi', start)])
    )


def test_the_headline_churn_is_the_active_customers_with_everyone_named_beside(
    tmp_path: Path,
) -> None:
    scores = scores_frame()
    write_run(tmp_path, "2024-06-01", scores, summarise(scores, {}))
    page = render_html(build_dashboard(tmp_path))
    churn = _card(page, "Expected churn rate")
    assert " 25.0% " in churn  # a, b and d: (0.5 + 0.25 + 0) / 3
    assert "3 active customers" in churn
    assert "all 4 customers, lapsed and lost included: 31.2%" in churn
    at_risk = _card(page, "Value at risk")
    assert "21.4% of the active customers' equity (all customers: 30.0%)" in at_risk


def test_a_run_without_the_population_mark_says_so_and_shows_everyone(tmp_path: Path) -> None:
    write_run(tmp_path, "2024-06-01", scores_frame().drop(columns=["active_customer"]))
    churn = _card(render_html(build_dashboard(tmp_path)), "Expected churn rate")
    assert " n/a " in churn and "does not mark its active customers" in churn
    assert "all 4 customers, lapsed and lost included: 31.2%" in churn


def test_a_stale_or_drifted_run_gets_a_banner(tmp_path: Path) -> None:
    scores = scores_frame()
    clean = {**summarise(scores, {}), "freshness": {"flags": []}, "drift": {"flagged": []}}
    write_run(tmp_path, "2024-06-01", scores, clean)
    assert 'id="flags"' not in render_html(build_dashboard(tmp_path))

    flagged = {
        **clean,
        "freshness": {"flags": ["transactions: latest row 12 days before 2024-07-01"]},
        "drift": {"flagged": ["recency_days", "clv"], "threshold": 0.25},
    }
    write_run(tmp_path, "2024-07-01", scores, flagged)
    page = render_html(build_dashboard(tmp_path))
    banner = page[page.index('id="flags"') : page.index('id="headline"')]
    assert 'role="alert"' in banner and "flagged stale and drifted" in banner
    assert "Stale data: transactions: latest row 12 days before 2024-07-01" in banner
    assert "Drift past PSI 0.25 in 2 column(s): recency_days, clv" in banner
    # Only the latest run's flags: a flagged run followed by a clean one shows none.
    write_run(tmp_path, "2024-08-01", scores, clean)
    assert 'id="flags"' not in render_html(build_dashboard(tmp_path))


def test_customer_equity_shows_its_range_when_the_run_has_one(tmp_path: Path) -> None:
    scores = scores_frame()  # equity 1,000
    interval = {"level": 0.8, "low": 850.0, "high": 1230.0, "low_factor": 0.85, "high_factor": 1.23}
    write_run(tmp_path, "2024-06-01", scores, summarise(scores, {}))
    older = _card(render_html(build_dashboard(tmp_path)), "Customer equity")
    assert "sum of CLV" in older and "range" not in older
    with_range = {**summarise(scores, {}), "customer_equity_interval": interval}
    write_run(tmp_path, "2024-07-01", scores, with_range)
    dashboard = build_dashboard(tmp_path)
    assert dashboard.headline["customer_equity_low"] == 850.0
    assert "80% range 850 to 1.2k" in _card(render_html(dashboard), "Customer equity")
