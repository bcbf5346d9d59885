"""`vafa store list`, `delete` and `rollback`: a wrong night undone, with clear output and codes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.runs import run_folder
from serving.store.database import ScoreStore
from vafa.cli.app import app


def scores(ids: list[str], as_of: str, churn: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ids,
            "as_of": pd.Timestamp(as_of),
            "churn_probability": np.full(len(ids), churn),
            "clv": 1.0,
            "value_at_risk": churn,
            "segment": "loyal",
            "recommended_action": "reminder",
            "model_version": "3",
        }
    )


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ScoreStore:
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    monkeypatch.setenv("VAFA_STORE_URL", url)
    return ScoreStore(url)


def published(store: ScoreStore, out: Path, day: str, churn: float) -> Path:
    """A night as `vafa score` leaves it: its folder and its run in the store."""
    folder = run_folder(out, day)
    folder.mkdir(parents=True)
    scores(["a", "b"], day, churn).to_parquet(folder / "scores.parquet")
    store.upsert(scores(["a", "b"], day, churn), out_dir=out)
    return folder


def vafa(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["store", *args])
    return result.exit_code, result.stdout, result.stderr


def test_a_mistyped_future_night_is_rolled_back_then_deleted_with_its_folder(
    store: ScoreStore, tmp_path: Path
) -> None:
    out = tmp_path / "scores"
    published(store, out, "2026-11-01", 0.2)
    future = published(store, out, "2031-01-01", 0.9)  # `vafa score --as-of 2031-01-01`
    code, listed, _ = vafa("list")
    assert code == 0
    lines = listed.splitlines()
    assert "served" in lines[2] and "2031-01-01" in lines[2] and str(out.resolve()) in lines[2]
    assert "published" in lines[3] and "2026-11-01" in lines[3]

    code, said, _ = vafa("rollback")
    assert code == 0
    assert "withdrew run 2 as of 2031-01-01" in said
    assert "the store serves run 1 as of 2026-11-01 again" in said
    assert f"note: {future} is still there" in said
    assert store.lookup(["a"]).found[0]["churn_probability"] == 0.2

    code, _, err = vafa("rollback")
    assert code == 1 and "nothing to roll back to: run 1 as of 2026-11-01" in err

    code, said, _ = vafa("delete", "--as-of", "2031-01-01", "--remove-folder")
    assert code == 0
    assert "deleted run 2 as of 2031-01-01 (2 rows, withdrawn)" in said
    assert "the store still serves run 1 as of 2026-11-01" in said
    assert f"removed {future}" in said and not future.exists()
    assert run_folder(out, "2026-11-01").exists()

    code, _, err = vafa("delete", "--as-of", "2031-01-01")
    assert code == 1 and "no published run as of 2031-01-01" in err


def test_deleting_the_served_night_serves_the_one_before(store: ScoreStore, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    published(store, out, "2026-11-01", 0.2)
    published(store, out, "2026-11-02", 0.4)
    code, said, _ = vafa("delete", "--as-of", "2026-11-02")
    assert code == 0 and "the store serves run 1 as of 2026-11-01 now" in said
    assert "--remove-folder removes it" in said  # the folder was kept, and said so
    assert store.ping() == dt.date(2026, 11, 1)


def test_list_settles_what_a_dead_run_left(store: ScoreStore, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    published(store, out, "2026-11-01", 0.2)
    dead = store.stage(scores(["a", "b"], "2026-11-02", 0.7), out_dir=out)  # then killed
    code, said, _ = vafa("list")
    assert code == 0
    assert f"removed run {dead.run_id}: staged by a run that did not finish" in said
    assert [r.state for r in store.runs()] == ["published"]


def test_an_empty_store_and_an_unusable_one(store: ScoreStore, tmp_path: Path) -> None:
    code, said, _ = vafa("list")
    assert code == 0 and "no runs" in said
    (tmp_path / "a-file").write_text("")
    code, _, err = vafa("list", "--store-url", f"sqlite:///{tmp_path / 'a-file' / 'x.db'}")
    assert code == 1 and err.startswith("error: scores store sqlite:///")
    code, _, err = vafa("delete", "--as-of", "someday")
    assert code == 2 and "--as-of" in err
