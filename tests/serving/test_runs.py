"""The catalog of published runs: finding runs, the latest and previous one, publishing one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.runs import (
    Publication,
    RunLocked,
    begin,
    equity_interval,
    exclusive,
    find_runs,
    latest_run,
    pending,
    previous_run,
    run_date,
    run_folder,
    staged,
    staging_folder,
    summarise,
    swap_in,
)
from training.intervals import SpendIntervals


def publish(root: Path, day: str) -> Path:
    folder = run_folder(root, pd.Timestamp(day))
    folder.mkdir(parents=True)
    (folder / "scores.parquet").write_bytes(b"")
    return folder


def test_a_run_lives_in_one_folder_per_date() -> None:
    assert run_folder(Path("out"), pd.Timestamp("2026-11-01 13:00")) == Path("out/as_of=2026-11-01")
    assert run_date(Path("out/as_of=2026-11-01")) == "2026-11-01"
    assert run_date(None) is None


def test_only_complete_dated_runs_are_found_oldest_first(tmp_path: Path) -> None:
    publish(tmp_path, "2026-11-01")
    publish(tmp_path, "2026-10-01")
    (tmp_path / "as_of=2026-12-01").mkdir()  # no scores: not published
    (tmp_path / "as_of=someday").mkdir()
    (tmp_path / "as_of=someday" / "scores.parquet").write_bytes(b"")
    found = find_runs(tmp_path)
    assert [str(r.as_of.date()) for r in found] == ["2026-10-01", "2026-11-01"]
    assert found[0].scores_path == tmp_path / "as_of=2026-10-01" / "scores.parquet"
    assert find_runs(tmp_path / "missing") == []


def test_latest_and_previous_runs(tmp_path: Path) -> None:
    first = publish(tmp_path, "2026-10-01")
    second = publish(tmp_path, "2026-11-01")
    latest = latest_run(tmp_path)
    assert latest is not None and latest.folder == second
    on_day = latest_run(tmp_path, pd.Timestamp("2026-10-01"))
    assert on_day is not None and on_day.folder == first
    assert latest_run(tmp_path, pd.Timestamp("2026-10-02")) is None
    assert previous_run(tmp_path, pd.Timestamp("2026-11-01")) == first  # never itself
    assert previous_run(tmp_path, pd.Timestamp("2026-10-01")) is None


def test_a_staged_run_is_swapped_in_whole_or_not_at_all(tmp_path: Path) -> None:
    old = publish(tmp_path, "2026-11-01")
    (old / "summary.json").write_text("old")
    with (
        pytest.raises(RuntimeError, match="half-way"),
        staged(tmp_path, pd.Timestamp("2026-11-01")) as staging,
    ):
        (staging / "summary.json").write_text("new")
        raise RuntimeError("half-way")
    assert (old / "summary.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["as_of=2026-11-01"]
    with staged(tmp_path, pd.Timestamp("2026-11-01")) as staging:
        (staging / "scores.parquet").write_bytes(b"")
        (staging / "summary.json").write_text("new")
    assert (old / "summary.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["as_of=2026-11-01"]


def test_a_journaled_publication_is_undone_or_finished_as_the_store_says(tmp_path: Path) -> None:
    """Killed between its swap and the store's switch, a run leaves a journal the next settles."""
    old = publish(tmp_path, "2026-11-01")
    (old / "summary.json").write_text("old")

    def killed_after_swap() -> Publication:
        staging = staging_folder(tmp_path, pd.Timestamp("2026-11-01"))
        (staging / "scores.parquet").write_bytes(b"")
        (staging / "summary.json").write_text("new")
        publication = begin(staging, pd.Timestamp("2026-11-01"), {"store": "s", "run_id": 7})
        swap_in(publication)  # ... and the process dies here
        return publication

    dead = killed_after_swap()
    assert pending(tmp_path) == dead
    assert (old / "summary.json").read_text() == "new"  # swapped in, the store not switched
    asked = []
    with exclusive(tmp_path, lambda p: asked.append(p.commit) or False):
        pass
    assert asked == [{"store": "s", "run_id": 7}]
    assert (old / "summary.json").read_text() == "old"  # put back: the store did not switch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["as_of=2026-11-01"]

    killed_after_swap()
    with exclusive(tmp_path, lambda p: True):  # the store had switched: the run stands
        pass
    assert (old / "summary.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["as_of=2026-11-01"]

    killed_after_swap()
    with pytest.raises(RuntimeError, match="run again with that store"), exclusive(tmp_path):
        pass
    assert pending(tmp_path) is not None  # nothing decided without the store


def test_a_new_dates_folder_is_taken_out_again_when_its_store_did_not_switch(
    tmp_path: Path,
) -> None:
    publish(tmp_path, "2026-11-01")
    staging = staging_folder(tmp_path, pd.Timestamp("2026-11-02"))
    (staging / "scores.parquet").write_bytes(b"")
    swap_in(begin(staging, pd.Timestamp("2026-11-02"), {"store": "s", "run_id": 8}))
    assert [str(r.as_of.date()) for r in find_runs(tmp_path)] == ["2026-11-01", "2026-11-02"]
    with exclusive(tmp_path, lambda p: False):
        pass
    assert [str(r.as_of.date()) for r in find_runs(tmp_path)] == ["2026-11-01"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["as_of=2026-11-01"]


def test_a_second_run_on_a_folder_is_refused_while_one_holds_it(tmp_path: Path) -> None:
    with (
        exclusive(tmp_path),
        pytest.raises(RunLocked, match="another run is writing"),
        exclusive(tmp_path),
    ):
        pass


def test_the_summary_gives_the_equity_range_of_a_model_with_ranges() -> None:
    """From the model's stored intervals; none without them (older models, older runs)."""
    rng = np.random.default_rng(0)
    pred = rng.gamma(1.0, 100.0, 2000)
    intervals = SpendIntervals.fit(pred, pred * rng.gamma(2.0, 0.5, 2000))
    config = {"spend_intervals": intervals.to_dict(), "margin_rate": 0.3, "discount_factor": 0.9}
    scores = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(2000)],
            "churn_probability": 0.2,
            "predicted_spend": pred,
            "clv": pred * 0.27,
            "value_at_risk": pred * 0.054,
            "recommended_action": "no_action",
            "segment": "loyal",
            "model_version": "4",
        }
    )
    summary = summarise(scores, {}, config)
    equity = summary["customer_equity_interval"]
    low, high = intervals.equity_interval(pred, pred * 0.27)
    assert equity == pytest.approx(
        {
            "level": 0.8,
            "low": low,
            "high": high,
            "low_factor": low / summary["customer_equity"],
            "high_factor": high / summary["customer_equity"],
        }
    )
    assert equity["low_factor"] < 1 < equity["high_factor"]
    assert summarise(scores, {})["customer_equity_interval"] is None
    assert summarise(scores, {}, {"margin_rate": 0.3})["customer_equity_interval"] is None
    assert equity_interval(scores.head(0), config) is None
