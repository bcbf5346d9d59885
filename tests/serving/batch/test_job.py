"""The nightly run: exact re-runs, all-or-nothing publishing, store, changes, lock, the CLI."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from features.io import write_tables
from features.schema import Tables
from serving.batch import job
from serving.batch.job import BatchError, BatchOptions, action_changes, run_batch
from serving.runs import previous_run
from serving.scoring.columns import CONTRACT_COLUMNS
from serving.scoring.scorer import Scorer
from serving.store.database import ScoreStore
from tests.serving.batch.factories import AS_OF


@pytest.fixture(scope="module")
def tracking_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow store for the module: creating its tables costs seconds each time."""
    return tmp_path_factory.mktemp("mlflow-scoring")


@pytest.fixture
def champion(scorer: Scorer, tracking_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Scorer:
    """`vafa score` gets this scorer instead of the registry's champion."""
    monkeypatch.setattr(
        "training.registry.load_bundle", lambda alias="champion": (scorer.bundle, scorer.version)
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tracking_dir / 'mlflow.db'}")
    return scorer


def test_rows_on_or_after_the_date_change_nothing(
    tables: Tables, scorer: Scorer, tmp_path: Path
) -> None:
    tx, ev = tables.transactions, tables.events
    late = tx.head(300).assign(ts=AS_OF + pd.Timedelta(hours=1), amount=1e6)
    late_events = ev.head(300).assign(ts=AS_OF, event="complaint")
    future = replace(
        tables,
        transactions=pd.concat([tx, late], ignore_index=True),
        events=pd.concat([ev, late_events], ignore_index=True),
    )
    clean = run_batch(
        tables, AS_OF, scorer, tmp_path / "a", None, BatchOptions(chunk_customers=150)
    )
    dirty = run_batch(
        future, AS_OF, scorer, tmp_path / "b", None, BatchOptions(chunk_customers=150)
    )
    assert_frame_equal(dirty.scores, clean.scores)
    assert dirty.summary["drift"] == clean.summary["drift"]
    assert dirty.summary["freshness"] == clean.summary["freshness"]


def test_rerun_of_a_date_replaces_it_exactly(
    tables: Tables, scorer: Scorer, tmp_path: Path
) -> None:
    store = ScoreStore(f"sqlite:///{tmp_path / 'scores.db'}")
    options = BatchOptions(chunk_customers=150)
    first = run_batch(tables, AS_OF, scorer, tmp_path / "out", store, options)
    saved = pd.read_parquet(first.folder / "scores.parquet")
    second = run_batch(tables, AS_OF, scorer, tmp_path / "out", store, options)
    assert second.folder == first.folder == tmp_path / "out" / "as_of=2026-11-01"
    assert_frame_equal(pd.read_parquet(second.folder / "scores.parquet"), saved)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["as_of=2026-11-01"]
    assert store.count() == len(saved) == first.summary["customers"]
    # The re-run compares with no earlier date, never with itself.
    assert second.summary["changes"]["previous_as_of"] is None

    doubled = tables.transactions.assign(amount=tables.transactions["amount"] * 2)
    third = run_batch(replace(tables, transactions=doubled), AS_OF, scorer, tmp_path / "out", store)
    assert_frame_equal(pd.read_parquet(third.folder / "scores.parquet"), third.scores)
    assert not third.scores["clv"].equals(saved["clv"])
    one = third.scores.iloc[0]
    (stored,) = store.lookup([one["customer_id"]]).found
    assert stored["clv"] == pytest.approx(one["clv"]) and store.count() == len(saved)


def test_store_holds_the_runs_rows(tables: Tables, scorer: Scorer, tmp_path: Path) -> None:
    store = ScoreStore(f"sqlite:///{tmp_path / 'scores.db'}")
    result = run_batch(tables, AS_OF, scorer, tmp_path / "out", store)
    some = result.scores.sample(5, random_state=1)
    found = {row["customer_id"]: row for row in store.lookup(some["customer_id"].tolist()).found}
    for _, row in some.iterrows():
        stored = found[row["customer_id"]]
        assert stored["recommended_action"] == row["recommended_action"]
        assert stored["churn_probability"] == pytest.approx(row["churn_probability"])
        assert stored["model_version"] == "7"
    assert result.summary["store"]["rows"] == store.count() == len(result.scores)
    assert result.summary["store"]["run_id"] == store.served().run_id


def test_changed_actions_against_the_latest_earlier_run(
    tables: Tables, scorer: Scorer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_batch(tables, AS_OF - pd.Timedelta(days=30), scorer, out, None)
    middle = run_batch(tables, AS_OF - pd.Timedelta(days=7), scorer, out, None)
    latest = run_batch(tables, AS_OF, scorer, out, None)
    assert previous_run(out, AS_OF) == middle.folder
    changes = latest.summary["changes"]
    assert changes["previous_as_of"] == "2026-10-25"
    changed = pd.read_parquet(latest.folder / "changed_actions.parquet")
    old, new = middle.scores.set_index("customer_id"), latest.scores.set_index("customer_id")
    both = old.index.intersection(new.index)
    differs = both[
        old.loc[both, "recommended_action"].astype(str)
        != new.loc[both, "recommended_action"].astype(str)
    ]
    assert len(differs) > 0, "a week later some action should differ"
    assert sorted(changed["customer_id"]) == sorted(differs)
    row = changed.iloc[0]
    assert row["previous_action"] == old.loc[row["customer_id"], "recommended_action"]
    assert row["recommended_action"] == new.loc[row["customer_id"], "recommended_action"]
    assert changes["changed_actions"] == len(differs)
    assert changes["new_customers"] == len(new.index.difference(old.index))
    assert changes["dropped_customers"] == len(old.index.difference(new.index))
    assert pd.read_csv(latest.folder / "changed_actions.csv").shape[0] == len(differs)


def test_action_changes_counts_new_and_dropped_customers() -> None:
    before = pd.DataFrame({"customer_id": ["a", "b", "c"], "recommended_action": ["x", "y", "z"]})
    now = pd.DataFrame(
        {
            "customer_id": ["a", "b", "d"],
            "recommended_action": ["x", "w", "x"],
            "churn_probability": [0.1, 0.2, 0.3],
            "value_at_risk": [1.0, 2.0, 3.0],
        }
    )
    changed, stats = action_changes(now, before)
    assert changed[
        ["customer_id", "previous_action", "recommended_action"]
    ].to_numpy().tolist() == [["b", "y", "w"]]
    assert stats | {"transitions": None} == {
        "changed_actions": 1,
        "new_customers": 1,
        "dropped_customers": 1,
        "transitions": None,
    }
    assert stats["transitions"] == {"y -> w": 1}


@pytest.mark.parametrize("failing", ["writer", "store"])
def test_failure_half_way_leaves_previous_results(
    tables: Tables,
    scorer: Scorer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
) -> None:
    out = tmp_path / "out"
    store = ScoreStore(f"sqlite:///{tmp_path / 'scores.db'}")
    good = run_batch(tables, AS_OF, scorer, out, store)
    before = pd.read_parquet(good.folder / "scores.parquet")
    summary = (good.folder / "summary.json").read_text()
    stored = store.lookup(before["customer_id"].head(3).tolist()).found

    if failing == "writer":
        real = job.write_frame

        def write_frame(frame: pd.DataFrame, path: Path) -> Path:
            if path.name == "scores.csv":  # the Parquet file is already written
                raise OSError("disk full")
            return real(frame, path)

        monkeypatch.setattr(job, "write_frame", write_frame)
    else:

        def stage(self: ScoreStore, scores: pd.DataFrame, **_: object) -> None:
            raise RuntimeError("connection lost")

        monkeypatch.setattr(ScoreStore, "stage", stage)
    other = replace(tables, transactions=tables.transactions.assign(amount=lambda f: f.amount * 2))
    with pytest.raises(
        BatchError,
        match=r"Nothing was published in .*out, and the scores store still serves run 1 as of "
        "2026-11-01",
    ):
        run_batch(other, AS_OF, scorer, out, store)
    assert_frame_equal(pd.read_parquet(good.folder / "scores.parquet"), before)
    assert (good.folder / "summary.json").read_text() == summary
    assert sorted(p.name for p in out.iterdir()) == ["as_of=2026-11-01"]  # no staging left
    assert store.lookup(before["customer_id"].head(3).tolist()).found == stored


def test_one_run_at_a_time_per_output_folder(
    tables: Tables, scorer: Scorer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    good = run_batch(tables, AS_OF, scorer, out, None)
    before = pd.read_parquet(good.folder / "scores.parquet")
    other = replace(tables, transactions=tables.transactions.assign(amount=lambda f: f.amount * 2))
    held = os.open(out, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # as another `vafa score` on this folder holds it
    try:
        with pytest.raises(BatchError, match=r"another run is writing to .*out"):
            run_batch(other, AS_OF, scorer, out, None)
    finally:
        os.close(held)
    assert_frame_equal(pd.read_parquet(good.folder / "scores.parquet"), before)
    assert sorted(p.name for p in out.iterdir()) == ["as_of=2026-11-01"]
    run_batch(other, AS_OF, scorer, out, None)  # the lock went with its holder
    assert not pd.read_parquet(good.folder / "scores.parquet")["clv"].equals(before["clv"])


def test_the_next_run_tidies_what_a_killed_run_left(
    tables: Tables, scorer: Scorer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run_batch(tables, AS_OF, scorer, out, None)
    # Killed while writing its files; killed between the two renames of its swap (its date's
    # folder moved aside, not yet replaced); killed after them (the old folder not yet removed).
    (out / ".staging-as_of=2026-11-01-dead").mkdir()
    (out / ".staging-as_of=2026-11-01-dead" / "scores.csv").write_text("half")
    shutil.copytree(first.folder, out / ".retired-as_of=2026-10-01-dead")
    shutil.copytree(first.folder, out / ".retired-as_of=2026-11-01-dead")
    run_batch(tables, AS_OF, scorer, out, None)
    assert sorted(p.name for p in out.iterdir()) == ["as_of=2026-10-01", "as_of=2026-11-01"]
    restored = pd.read_parquet(out / "as_of=2026-10-01" / "scores.parquet")
    assert_frame_equal(restored, pd.read_parquet(first.folder / "scores.parquet"))


def write_data(tables: Tables, folder: Path) -> Path:
    write_tables(tables, folder)
    return folder


def vafa_run(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """`vafa ARGS` in this process (so the champion can be patched in); returns the exit code."""
    from vafa.cli.app import run

    monkeypatch.setattr(sys, "argv", ["vafa", *args])
    with pytest.raises(SystemExit) as exit_info:
        run()
        raise SystemExit(0)
    return int(exit_info.value.code or 0)


def test_vafa_score_writes_folder_store_and_mlflow_run(
    tables: Tables,
    champion: Scorer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import mlflow

    data = write_data(tables, tmp_path / "data")
    out = tmp_path / "scores"
    code = vafa_run(
        ["score", "--data", str(data), "--out", str(out), "--chunk-customers", "150"], monkeypatch
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "scored" in captured.out and "as_of=2026-11-01" in captured.out
    run = out / "as_of=2026-11-01"
    scores = pd.read_parquet(run / "scores.parquet")
    assert_frame_equal(pd.read_csv(run / "scores.csv")[["customer_id"]], scores[["customer_id"]])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["customers"] == len(scores) and summary["chunks"] == 3
    assert summary["model_versions"] == ["7"]
    assert set(summary["score_distributions"]) >= {"churn_probability", "clv"}
    assert summary["drift"]["measured"] and not summary["drift"]["flagged"]
    assert summary["freshness"]["flags"] == []
    from vafa.settings import Settings

    assert ScoreStore(Settings.from_env().store_url).count() == len(scores)
    runs = mlflow.search_runs(experiment_names=["vafa-scoring"], order_by=["start_time DESC"])
    assert runs.loc[0, "metrics.customers"] == len(scores)
    assert runs.loc[0, "params.as_of"] == "2026-11-01" and runs.loc[0, "params.chunks"] == "3"
    assert runs.loc[0, "tags.drift_flagged"] == "false"
    assert runs.loc[0, "metrics.psi_features_spend_total"] < 0.25


def test_vafa_score_failure_exits_1_with_a_clear_message(
    tables: Tables,
    champion: Scorer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = write_data(tables, tmp_path / "data")
    out = tmp_path / "scores"
    assert vafa_run(["score", "--data", str(data), "--out", str(out)], monkeypatch) == 0
    before = pd.read_parquet(out / "as_of=2026-11-01" / "scores.parquet")

    def stage(self: ScoreStore, scores: pd.DataFrame, **_: object) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(ScoreStore, "stage", stage)
    capsys.readouterr()
    assert vafa_run(["score", "--data", str(data), "--out", str(out)], monkeypatch) == 1
    err = capsys.readouterr().err
    assert "scoring as of 2026-11-01 failed" in err and "database is locked" in err
    assert "Nothing was published" in err and "still serves run 1 as of 2026-11-01" in err
    assert "Traceback" not in err
    assert_frame_equal(pd.read_parquet(out / "as_of=2026-11-01" / "scores.parquet"), before)


def test_vafa_score_exit_codes_for_drift_and_stale_data(
    tables: Tables,
    champion: Scorer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shifted = replace(
        tables, transactions=tables.transactions.assign(amount=lambda f: f.amount * 3)
    )
    data = write_data(shifted, tmp_path / "data")
    args = ["score", "--data", str(data), "--out", str(tmp_path / "scores")]
    assert vafa_run(args, monkeypatch) == 0  # drift warns, fails only when asked
    assert "warning: drift" in capsys.readouterr().err
    assert vafa_run([*args, "--fail-on-drift"], monkeypatch) == 4
    summary = json.loads((tmp_path / "scores" / "as_of=2026-11-01" / "summary.json").read_text())
    assert "spend_total" in summary["drift"]["flagged"]  # published all the same

    late = tables.transactions["ts"] >= AS_OF - pd.Timedelta(days=10)
    stale = replace(tables, transactions=tables.transactions[~late])
    data = write_data(stale, tmp_path / "stale")
    args = ["score", "--data", str(data), "--out", str(tmp_path / "s2"), "--as-of", "2026-11-01"]
    assert vafa_run([*args, "--fail-on-stale", "--no-store"], monkeypatch) == 5
    assert "stale data: transactions" in capsys.readouterr().err


def test_unknown_engine_is_a_usage_error(
    tables: Tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_data(tables, tmp_path / "data")
    args = ["score", "--data", str(data), "--out", str(tmp_path / "o"), "--engine", "dask"]
    assert vafa_run(args, monkeypatch) == 2


def test_rows_carry_the_ranges_and_the_summary_the_equity_range(
    tables: Tables, scorer: Scorer, tmp_path: Path
) -> None:
    """The CRM row (Parquet and CSV) has each customer's ranges; the summary the equity's."""
    result = run_batch(tables, AS_OF, scorer, tmp_path / "out", None, BatchOptions())
    for written in (
        pd.read_parquet(result.folder / "scores.parquet"),
        pd.read_csv(result.folder / "scores.csv"),
    ):
        assert set(CONTRACT_COLUMNS) <= set(written.columns)
        assert written[["clv_low", "clv_high"]].notna().all().all()
        assert (written["clv_low"] <= written["clv_high"]).all()
        assert (written["spend_low"] <= written["spend_high"]).all()
    stored = json.loads((result.folder / "summary.json").read_text())
    equity = stored["customer_equity_interval"]
    assert equity["level"] == 0.8
    assert equity["low"] < stored["customer_equity"] < equity["high"]
    assert equity["low_factor"] == pytest.approx(equity["low"] / stored["customer_equity"])
    assert result.summary["customer_equity_interval"] == equity


def test_a_model_without_ranges_publishes_null_ranges(
    tables: Tables, scorer: Scorer, tmp_path: Path
) -> None:
    config = {k: v for k, v in scorer.bundle.config.items() if k != "spend_intervals"}
    old = Scorer(replace(scorer.bundle, config=config), "6")
    result = run_batch(tables, AS_OF, old, tmp_path / "out", None, BatchOptions())
    written = pd.read_parquet(result.folder / "scores.parquet")
    assert written[["clv_low", "clv_high"]].isna().all().all()
    assert result.summary["customer_equity_interval"] is None
