"""`vafa` starts at once: the heavy libraries are imported by the commands that use them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

VAFA = str(Path(sys.executable).with_name("vafa"))
HEAVY = ("mlflow", "bentoml", "lightgbm", "pyspark", "matplotlib", "numba", "optuna", "sklearn")


def test_importing_the_cli_imports_no_heavy_library() -> None:
    script = (
        "import json, sys\n"
        "import vafa.cli.app\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize("args", [["--help"], ["validate", "--help"]])
def test_help_works(args: list[str]) -> None:
    done = subprocess.run(
        [VAFA, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
