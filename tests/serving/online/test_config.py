"""The service's settings from the environment, and the refusal to bind beyond loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from serving.online.config import ConfigError, ServiceConfig, check_bind, is_loopback

# What `vafa serve` passes to every server it starts.
SERVED = {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db", "VAFA_STORE_URL": "sqlite:///scores.db"}


def config(**env: str) -> ServiceConfig:
    return ServiceConfig.from_env({**SERVED, **env})


TOKEN = "a-token-of-24-characters"


def test_token_from_the_variable_or_a_file(tmp_path: Path) -> None:
    assert config(VAFA_API_TOKEN=TOKEN).token == TOKEN
    assert config().token is None
    token = tmp_path / "token"
    token.write_text(f"{TOKEN}\n")
    assert config(VAFA_API_TOKEN_FILE=str(token)).token == TOKEN


def test_a_token_with_stray_whitespace_is_the_token_without_it() -> None:
    """From the variable as from a file: a pasted space must not lock everyone out."""
    assert config(VAFA_API_TOKEN=f"  {TOKEN}\n").token == TOKEN
    with pytest.raises(ConfigError, match="only whitespace"):
        config(VAFA_API_TOKEN="   ")


@pytest.mark.parametrize("token", ["x", "short-token-15c"])
def test_a_short_token_is_refused(token: str, tmp_path: Path) -> None:
    """A 1-character token sufficed to bind 0.0.0.0."""
    with pytest.raises(ConfigError, match="fewer than 16"):
        config(VAFA_API_TOKEN=token)
    (tmp_path / "token").write_text(token)
    with pytest.raises(ConfigError, match="fewer than 16"):
        config(VAFA_API_TOKEN_FILE=str(tmp_path / "token"))


def test_registry_calls_get_short_timeouts_unless_the_environment_sets_them() -> None:
    """MLflow's own defaults (120 s a request, 7 retries) kept the service mute for minutes."""
    from training.registry import HTTP_DEFAULTS

    env = config().registry_environment({})
    assert env == HTTP_DEFAULTS  # the same short defaults as the other commands
    assert int(env["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 10
    assert int(env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 2
    chosen = config(MLFLOW_HTTP_REQUEST_TIMEOUT="3", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    assert chosen.registry_environment({"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "5"}) == {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "5",
    }


@pytest.mark.parametrize(
    "env,message",
    [
        ({"VAFA_API_TOKEN": "a", "VAFA_API_TOKEN_FILE": "/x"}, "not both"),
        ({"VAFA_API_TOKEN_FILE": "/nonexistent/token"}, "cannot read"),
        ({"VAFA_MODEL_POLL_SECONDS": "soon"}, "must be a number"),
        ({"VAFA_MAX_REQUEST_BYTES": "10"}, "at least"),
        ({"VAFA_BATCH_WAIT_MS": "-1"}, "VAFA_BATCH_WAIT_MS must be at least 0"),
        ({"MLFLOW_HTTP_REQUEST_TIMEOUT": "0.5"}, "MLFLOW_HTTP_REQUEST_TIMEOUT must be at least 1"),
        ({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1.5"}, "must be a whole number"),
        ({"VAFA_AUTH_FAILURES": "0"}, "VAFA_AUTH_FAILURES must be at least 1"),
        ({"VAFA_RELOAD_WAIT_SECONDS": "soon"}, "must be a number"),
    ],
)
def test_inconsistent_settings_stop_the_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(**env)


@pytest.mark.parametrize("missing", [["MLFLOW_TRACKING_URI"], ["VAFA_STORE_URL"], [*SERVED]])
def test_the_registry_and_the_store_must_be_given(missing: list[str]) -> None:
    """Serving reads no project settings: `vafa serve` passes both, and nothing defaults."""
    env = {name: value for name, value in SERVED.items() if name not in missing}
    with pytest.raises(ConfigError, match="`vafa serve` sets") as raised:
        ServiceConfig.from_env({**env, **dict.fromkeys(missing, "")})
    assert all(name in str(raised.value) for name in missing)
    assert config().tracking_uri == SERVED["MLFLOW_TRACKING_URI"]
    assert config().store_url == SERVED["VAFA_STORE_URL"]


def test_the_batch_wait_is_read_in_milliseconds() -> None:
    assert config().batch_wait_seconds == pytest.approx(0.05)
    assert config(VAFA_BATCH_WAIT_MS="0").batch_wait_seconds == 0.0
    assert config(VAFA_BATCH_WAIT_MS="20").batch_wait_seconds == 0.02


def test_empty_token_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        config(VAFA_API_TOKEN_FILE=str(tmp_path / "token"))


@pytest.mark.parametrize(
    "host,loopback",
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
     ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_binding_beyond_loopback_needs_a_token_or_explicit_insecurity() -> None:
    check_bind("127.0.0.1", None, insecure=False)
    check_bind("0.0.0.0", TOKEN, insecure=False)
    check_bind("0.0.0.0", None, insecure=True)
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0"):
        check_bind("0.0.0.0", None, insecure=False)


def test_vafa_serve_refuses_an_open_address_without_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vafa.cli.app import app

    monkeypatch.delenv("VAFA_API_TOKEN", raising=False)
    monkeypatch.delenv("VAFA_API_TOKEN_FILE", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0" in result.output


@pytest.mark.parametrize("own_config", [False, True], ids=["default", "own-bentoml-config"])
def test_vafa_serve_hands_bentoml_its_workers_and_skips_tracing_nobody_collects(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, own_config: bool
) -> None:
    import json

    from vafa.cli.app import app

    started: dict[str, Any] = {}

    def execve(path: str, args: list[str], env: dict[str, str]) -> None:
        started.update(args=args, env=env)

    monkeypatch.setattr("os.execve", execve)
    monkeypatch.delenv("BENTOML_CONFIG", raising=False)
    if own_config:
        monkeypatch.setenv("BENTOML_CONFIG", str(tmp_path / "bentoml.yaml"))
    result = CliRunner().invoke(app, ["serve", "--workers", "2", "--port", "3999"])
    assert result.exit_code == 0, result.output
    assert started["args"][-6:-2] == ["--host", "127.0.0.1", "--port", "3999"]
    service = json.loads(started["env"]["BENTOML_CONFIG_OVERRIDES"])["services"]["vafa"]
    assert service["workers"] == 2
    if own_config:
        assert "tracing" not in service  # the operator's config decides
    else:
        assert service["tracing"] == {"excluded_urls": "/score,/lookup"}
