"""A scores folder the dashboard cannot be made from is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.report.build import build_dashboard
from serving.report.read import ReportError
from tests.serving.report.factories import scores_frame, write_run


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
