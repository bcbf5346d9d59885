"""The page: its sections say what the data lacks, show the changes and escape customer text."""

from __future__ import annotations

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
