"""Tuning says what it is doing: a bar on a terminal, a log line per trial otherwise."""

from __future__ import annotations

import io
import logging

import numpy as np
import pandas as pd
import pytest

from training.train import TrainOptions
from training.tuning import Split, tune


def _small_problem() -> tuple[Split, Split]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = (x["a"] + rng.normal(scale=0.5, size=400) > 0).to_numpy(dtype=float)
    return Split(x[:300], y[:300]), Split(x[300:], y[300:])


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_each_trial_is_a_log_line_off_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    train, valid = _small_problem()
    with caplog.at_level(logging.INFO, logger="training.progress"):
        tune("t-churn", "binary", train, valid, TrainOptions(trials=3, num_threads=1))
    lines = [r.getMessage() for r in caplog.records if r.name == "training.progress"]
    assert len(lines) == 3
    assert lines[0].startswith("tuning churn model: trial 1/3")
    assert lines[2].startswith("tuning churn model: trial 3/3") and "best" in lines[2]


def test_a_terminal_gets_a_bar(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    train, valid = _small_problem()
    with caplog.at_level(logging.INFO, logger="training.progress"):
        tune("t-spend", "binary", train, valid, TrainOptions(trials=2, num_threads=1))
    assert "tuning spend model" in terminal.getvalue() and "2/2" in terminal.getvalue()
    assert not [r for r in caplog.records if r.name == "training.progress"]
