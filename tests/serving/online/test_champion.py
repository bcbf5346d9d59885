"""The champion holder: swaps when the alias moves, keeps serving through failures."""

from __future__ import annotations

import threading
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
