"""The champion holder: swaps when the alias moves, keeps serving through failures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from serving.online.champion import Champion, ChampionHolder, describe


class FakeRegistry:
    """An alias that moves, a registry that can go away, and versions that may not load."""

    def __init__(self) -> None:
        self.version = "1"
        self.down = False
        self.broken: set[str] = set()
        self.loads = 0

    def resolve(self, alias: str) -> str:
        if self.down:
            raise ConnectionError("http://user:hunter2@mlflow:5000 refused the connection")
        return self.version

    def load(self, alias: str) -> Champion:
        self.loads += 1
        if self.version in self.broken:
            raise ValueError("corrupt model file")
        return Champion(scorer=object(), version=self.version, loaded_at=None)  # type: ignore[arg-type]


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def holder(registry: FakeRegistry) -> ChampionHolder:
    return ChampionHolder(poll_seconds=0, resolve=registry.resolve, load=registry.load)


def test_swaps_when_the_alias_moves_and_only_then(
    holder: ChampionHolder, registry: FakeRegistry
) -> None:
    assert holder.refresh() is True and holder.current is not None
    first = holder.current
    assert holder.refresh() is False and holder.current is first and registry.loads == 1
    registry.version = "2"
    assert holder.refresh() is True
    assert holder.current is not None and holder.current.version == "2"
    assert first.version == "1"  # a request holding the old one keeps a whole, unchanged model


def test_registry_unreachable_keeps_serving_and_says_so(
    holder: ChampionHolder, registry: FakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    holder.refresh()
    registry.down = True
    assert holder.refresh() is False
    assert holder.current is not None and holder.current.version == "1"
    assert holder.error is not None and "registry" in holder.error
    assert "hunter2" not in holder.error and "hunter2" not in caplog.text
    assert "keeping version 1" in caplog.text
    registry.down = False
    holder.refresh()
    assert holder.error is None
    metrics = holder.metrics()
    assert 'vafa_model_loaded{version="1"} 1' in metrics
    assert "vafa_registry_failures_total 1" in metrics and "vafa_model_swaps_total 1" in metrics


def test_a_model_that_fails_to_load_is_not_served(
    holder: ChampionHolder, registry: FakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    holder.refresh()
    registry.version, registry.broken = "2", {"2"}
    assert holder.refresh() is False
    assert holder.current is not None and holder.current.version == "1"
    assert holder.error is not None and "version 2 failed to load" in holder.error


def test_without_any_model_it_waits_instead_of_failing(
    holder: ChampionHolder, registry: FakeRegistry
) -> None:
    registry.down = True
    assert holder.refresh() is False and holder.current is None
    registry.down = False
    assert holder.refresh() is True and holder.current is not None


def test_readers_always_see_a_whole_champion(registry: FakeRegistry) -> None:
    holder = ChampionHolder(poll_seconds=0, resolve=registry.resolve, load=registry.load)
    holder.refresh()
    seen: list[Any] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            current = holder.current
            seen.append(isinstance(current, Champion) and current.version in {"1", "2", "3"})

    reader = threading.Thread(target=read)
    reader.start()
    for version in ("2", "3", "2"):
        registry.version = version
        holder.refresh()
    done.set()
    reader.join()
    assert seen and all(seen)


def test_polling_follows_the_alias(registry: FakeRegistry) -> None:
    holder = ChampionHolder(poll_seconds=0.05, resolve=registry.resolve, load=registry.load)
    holder.refresh()
    holder.start()
    try:
        registry.version = "2"
        for _ in range(100):
            if holder.current is not None and holder.current.version == "2":
                break
            threading.Event().wait(0.05)
        assert holder.current is not None and holder.current.version == "2"
    finally:
        holder.stop()


def test_describe_masks_passwords() -> None:
    text = describe(RuntimeError("cannot reach postgresql://vafa:s3cret@db/scores\nmore"))
    assert text == "RuntimeError: cannot reach postgresql://vafa:***@db/scores"


# --- the registry is asked in the background ---------------------------------------------------


class HangingRegistry(FakeRegistry):
    """A registry that does not answer until told to."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = threading.Event()
        self.asked = 0

    def resolve(self, alias: str) -> str:
        self.asked += 1
        assert self.answer.wait(10)
        return super().resolve(alias)


def test_start_returns_at_once_and_loads_in_the_background() -> None:
    """The service answers (not ready) while the registry is asked; here it hangs."""
    registry = HangingRegistry()
    holder = ChampionHolder(poll_seconds=0, resolve=registry.resolve, load=registry.load)
    started = time.monotonic()
    holder.start()
    assert time.monotonic() - started < 0.5
    assert holder.current is None and holder.checking
    registry.answer.set()
    for _ in range(100):
        if not holder.checking:
            break
        time.sleep(0.05)
    assert holder.current is not None and not holder.checking
    holder.stop()


def test_a_check_joins_the_one_running_and_returns_its_error() -> None:
    registry = HangingRegistry()
    holder = ChampionHolder(poll_seconds=0, resolve=registry.resolve, load=registry.load)
    first, second = holder.check(), holder.check()
    assert first is second  # one registry call at a time, however many ask
    registry.answer.set()
    assert first.result(10) is None and registry.asked == 1
    registry.down = True
    failed = holder.check()
    assert failed is not first
    error = failed.result(10)
    assert error is not None and error.startswith("registry:") and "hunter2" not in error


# --- MLflow's own calls are short when the registry is down ------------------------------------


RESOLVE = """
import os, sys, time, mlflow
from serving.online.champion import resolve_alias
for uri, timeout in zip(sys.argv[1::2], sys.argv[2::2]):
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = timeout
    mlflow.set_tracking_uri(uri)
    started = time.monotonic()
    try:
        resolve_alias("champion")
    except Exception as exc:
        print(type(exc).__name__, round(time.monotonic() - started, 2))
"""


@pytest.mark.slow  # a Python process importing MLflow
def test_the_services_registry_settings_bound_a_dead_or_hanging_registry() -> None:
    """MLflow's defaults (120 s a request, 7 retries) took 263 s; the service's take seconds.

    One registry nobody listens on, one that accepts and never answers (with a 1 s request
    timeout: the default 10 s would make the test slow, not different), asked by MLflow itself
    in a process with the service's settings.
    """
    from serving.online.config import ServiceConfig

    env = ServiceConfig(token=None, tracking_uri="", store_url="").registry_environment({})
    with socket.socket() as unused, socket.socket() as hanging:
        unused.bind(("127.0.0.1", 0))
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(16)
        dead = f"http://127.0.0.1:{unused.getsockname()[1]}"
        silent = f"http://127.0.0.1:{hanging.getsockname()[1]}"
        done = subprocess.run(
            [sys.executable, "-c", RESOLVE, dead, env["MLFLOW_HTTP_REQUEST_TIMEOUT"], silent, "1"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
    outcomes = [line.split() for line in done.stdout.splitlines()]
    assert [failure for failure, _ in outcomes] == ["MlflowException"] * 2, done.stderr[-2000:]
    assert all(float(seconds) < 15 for _, seconds in outcomes), outcomes
