"""`bentoml build` packs the service (no container engine needed to build)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow  # `bentoml build` in a process


def test_bentoml_build_packs_the_service_its_routes_and_the_lock(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml = Path(sys.executable).parent / "bentoml"
    built = subprocess.run(
        [str(bentoml), "build", "--output", "tag"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (bento,) = (p for p in (tmp_path / "bentos" / "vafa").iterdir() if p.name != "latest")
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    routes = {api["route"] for api in manifest["schema"]["routes"]}
    assert {"/score", "/lookup", "/reload"} <= routes
    src = bento / "src"
    assert (src / "serving" / "online" / "service.py").exists()
    assert (src / "serving" / "scoring" / "policy" / "policy.yaml").exists()
    assert (src / "serving" / "report" / "template.html").exists()
    assert (src / "serving" / "batch" / "spark.py").exists()
    assert not (bento / "src" / "tests").exists()
    locked = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "lightgbm==" in locked and "bentoml==" in locked
