"""The dashboard in a real headless browser: it renders, shows its figures and logs nothing.

The page has no script, so the DOM chromium dumps is the parsed page; what the test adds over
reading the HTML string is that a browser parses it into the expected elements, that the
Content-Security-Policy blocks nothing (a blocked fetch is a console message), and that the
screenshot shows the cards and the charts' bars.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from serving.report.build import write_report
from serving.report.markup import money
from tests.serving.report.factories import make_runs

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
ACCENT = np.array([0x2F, 0x6F, 0x9F])  # the bars' colour
CONSOLE = re.compile(r"CONSOLE[:(]")
pytestmark = [
    pytest.mark.slow,  # a headless chromium per check
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="needs chromium: `make unit` installs it (apt-get, as root); CI has it",
    ),
]


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless chromium on a local page; console messages go to stderr."""
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


class Elements(HTMLParser):
    """Counts of tags, ids present, and the text of each `.kpi` card."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.ids: set[str] = set()
        self.cards: list[str] = []
        self._card_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(str(attributes["id"]))
        if tag == "div":
            if self._card_depth:
                self._card_depth += 1
            elif "kpi" in str(attributes.get("class", "")).split():
                self._card_depth = 1
                self.cards.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._card_depth:
            self._card_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._card_depth:
            self.cards[-1] += data.strip() + " "


@pytest.fixture(scope="module")
def dashboard_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    root = tmp_path_factory.mktemp("browser")
    scores_dir, data = make_runs(root)
    page, dashboard = write_report(scores_dir, root / "report.html", data, market_value=1e6)
    return page, dashboard.headline  # type: ignore[return-value]


def test_the_console_check_catches_a_blocked_fetch(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'\"></head><body>"
        '<img src="https://example.com/a.png"></body></html>'
    )
    result = chromium(page, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_messages(result.stderr), "a blocked image must show as a console message"


def test_dashboard_renders_with_no_console_message(
    dashboard_page: tuple[Path, dict[str, float]], tmp_path: Path
) -> None:
    page, headline = dashboard_page
    result = chromium(page, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_messages(result.stderr) == []

    dom = Elements()
    dom.feed(result.stdout)
    expected_sections = {
        "headline",
        "clv",
        "segments",
        "retention",
        "voice",
        "vips",
        "actions",
        "trend",
    }
    assert expected_sections <= dom.ids
    assert dom.tags.get("section", 0) == len(expected_sections)
    # CLV, four groupings, NPS, actions, trend: eight charts, each an inline SVG.
    assert dom.tags.get("svg", 0) == 8
    assert dom.tags.get("script", 0) == 0 and dom.tags.get("img", 0) == 0
    assert len(dom.cards) == 10
    equity = next(c for c in dom.cards if c.startswith("Customer equity "))
    assert money(headline["customer_equity"]) in equity
    share = next(c for c in dom.cards if c.startswith("Customer equity share"))
    assert f"{100 * headline['customer_equity_share']:.1f}%" in share
    assert dom.tags.get("tr", 0) > 20  # group tables, VIPs, trend


def test_dashboard_screenshot_shows_cards_and_charts(
    dashboard_page: tuple[Path, dict[str, float]], tmp_path: Path
) -> None:
    from matplotlib.image import imread

    page, _ = dashboard_page
    shot = tmp_path / "dashboard.png"
    result = chromium(page, tmp_path / "profile", "--window-size=1280,2400", f"--screenshot={shot}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_messages(result.stderr) == []
    pixels = (imread(shot)[..., :3] * 255).round().astype(int)
    assert pixels.shape[:2] == (2400, 1280)
    not_white = (pixels < 245).any(axis=2).mean()
    assert 0.02 < not_white < 0.9, not_white
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert colours > 50
    accent = (np.abs(pixels - ACCENT).max(axis=2) <= 2).sum()
    assert accent > 2000, "the charts' bars and the cards' edges should be visible"


def test_a_flagged_run_shows_its_banner_in_the_browser(tmp_path: Path) -> None:
    from serving.runs import summarise
    from tests.serving.report.factories import scores_frame, write_run

    scores = scores_frame()
    flagged = {
        **summarise(scores, {}),
        "freshness": {"flags": ["transactions: latest row 12 days before 2024-06-01"]},
        "drift": {"flagged": ["recency_days"], "threshold": 0.25},
    }
    write_run(tmp_path / "scores", "2024-06-01", scores, flagged)
    page, _ = write_report(tmp_path / "scores", tmp_path / "report.html")
    result = chromium(page, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_messages(result.stderr) == []
    dom = Elements()
    dom.feed(result.stdout)
    assert "flags" in dom.ids
    banner = result.stdout[result.stdout.index('id="flags"') : result.stdout.index('id="headline"')]
    assert "flagged stale and drifted" in banner and "latest row 12 days" in banner
