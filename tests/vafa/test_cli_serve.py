"""`vafa serve` hands the server the registry and the scores store through its environment."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from vafa.cli.app import app
from vafa.settings import Settings


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `vafa serve` would start, instead of starting it."""
    seen: dict[str, Any] = {}

    def execve(path: str, args: list[str], env: dict[str, str]) -> None:
        seen.update(path=path, args=args, env=env)

    monkeypatch.setattr("os.execve", execve)
    return seen


def test_serve_passes_the_settings_it_resolved(
    started: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("VAFA_STORE_URL")
    defaults = Settings.from_env()
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    assert started["env"]["MLFLOW_TRACKING_URI"] == defaults.tracking_uri
    assert started["env"]["VAFA_STORE_URL"] == defaults.store_url
    assert "serving.online.service:VafaService" in started["args"]


def test_serve_keeps_what_the_environment_chose(
    started: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////srv/mlflow.db")
    monkeypatch.setenv("VAFA_STORE_URL", "postgresql://scores")
    result = CliRunner().invoke(app, ["serve", "--port", "3999"])
    assert result.exit_code == 0, result.output
    assert started["env"]["MLFLOW_TRACKING_URI"] == "sqlite:////srv/mlflow.db"
    assert started["env"]["VAFA_STORE_URL"] == "postgresql://scores"


def test_serve_refuses_a_bad_service_environment_with_exit_2(
    started: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAFA_API_TOKEN", "a")
    monkeypatch.setenv("VAFA_API_TOKEN_FILE", "/nonexistent")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "not both" in result.output and not started
