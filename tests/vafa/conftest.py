"""The `vafa` fixture: a command run in-process through the entry point, its exit and output."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from vafa.cli.app import run


@dataclass
class Done:
    code: int
    out: str
    err: str


@pytest.fixture
def vafa(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:  # a callable: vafa("features", "--data", ...) -> Done
    root = logging.getLogger()

    def call(*args: str) -> Done:
        monkeypatch.setattr(sys, "argv", ["vafa", *args])
        handlers = list(root.handlers)
        try:
            run()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            for handler in root.handlers[:]:  # logging set up by this run, on captured streams
                if handler not in handlers:
                    root.removeHandler(handler)
        captured = capsys.readouterr()
        return Done(code, captured.out, captured.err)

    return call
