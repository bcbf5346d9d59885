"""`vafa demo` keeps to its own folder and scores with the model it trained, winner or not."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.synthetic import generate_tables
from tests.serving.batch.factories import small_bundle
from vafa.cli.app import app


@pytest.fixture
def lost_to_the_champion(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Training registers version 2, which does not beat champion 1 (no real tuning)."""
    bundle = small_bundle(generate_tables(300, seed=5))
    seen: dict[str, Any] = {}

    def train_and_register(*args: Any, tracking_uri: str | None = None, **kwargs: Any) -> Any:
        seen["tracking_uri"] = tracking_uri
        registered = SimpleNamespace(version="2", promoted=False, run_id="r2")
        return SimpleNamespace(result=SimpleNamespace(bundle=bundle), registered=registered)

    def champion(alias: str = "champion") -> tuple[Any, str]:
        seen["champion_loaded"] = True
        return bundle, "1"

    monkeypatch.setattr("vafa.cli.demo.train_and_register", train_and_register)
    monkeypatch.setattr("training.registry.load_bundle", champion)
    return seen


def test_demo_scores_with_its_own_model_in_its_own_stores(
    lost_to_the_champion: dict[str, Any], tmp_path: Path, _isolated_mlflow: Path
) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--customers", "300", "--out", str(out), "--trials", "1"]
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out / "scores" / "as_of=2026-11-01" / "scores.parquet")
    assert set(scores["model_version"]) == {"2"}  # the model it trained, not champion 1
    assert "champion_loaded" not in lost_to_the_champion
    # Its own registry and scores store, whatever MLFLOW_TRACKING_URI and VAFA_STORE_URL say.
    own = f"sqlite:///{(out / 'mlflow' / 'mlflow.db').resolve()}"
    assert lost_to_the_champion["tracking_uri"] == own
    assert (out / "store" / "scores.db").is_file() and (out / "mlflow" / "mlflow.db").is_file()
    assert list(_isolated_mlflow.iterdir()) == []  # the environment's stores: untouched
    # ... and says so.
    assert "MLFLOW_TRACKING_URI and VAFA_STORE_URL are not used" in result.output
    assert "scored with model version 2, the one this demo trained" in result.output
    assert "promote --version 2" in result.output and "vafa serve" in result.output
    # The campaign sits beside the runs, where re-scoring the date cannot delete it.
    (plan,) = (out / "scores" / "campaigns" / "as_of=2026-11-01").glob("*.csv")
    assert pd.read_csv(plan)["customer_id"].isin(scores["customer_id"]).all()
