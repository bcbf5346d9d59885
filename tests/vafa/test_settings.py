"""Where the registry and the scores store are kept: the working directory, VAFA_HOME, or told."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vafa.settings import REPO_ROOT, Settings

VAFA = str(Path(sys.executable).with_name("vafa"))


def test_defaults_are_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow' / 'mlflow.db'}"
    assert settings.store_url == f"sqlite:///{tmp_path.resolve() / 'store' / 'scores.db'}"
    assert str(REPO_ROOT) not in settings.tracking_uri + settings.store_url


def test_vafa_home_moves_both_defaults_and_the_specific_variables_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    home = Settings.from_env({"VAFA_HOME": "shop"})  # relative: from the working directory
    assert home.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'shop/mlflow/mlflow.db'}"
    assert home.store_url == f"sqlite:///{tmp_path.resolve() / 'shop/store/scores.db'}"
    told = Settings.from_env(
        {
            "VAFA_HOME": "shop",
            "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
            "VAFA_STORE_URL": "postgresql+psycopg://vafa@db/scores",
        }
    )
    assert told.tracking_uri == "http://mlflow.internal:5000"
    assert told.store_url == "postgresql+psycopg://vafa@db/scores"
    assert Settings.from_env({"VAFA_HOME": ""}) == Settings.from_env({})


@pytest.mark.slow
def test_a_command_run_elsewhere_keeps_its_registry_there(tmp_path: Path) -> None:
    """`vafa promote` opens the registry, so it creates it where the defaults point."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "VAFA_HOME")}
    done = subprocess.run(
        [VAFA, "promote"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stderr  # an empty registry has no challenger to promote
    assert (tmp_path / "mlflow" / "mlflow.db").is_file()
