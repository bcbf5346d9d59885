"""`vafa train`'s figures on both populations, and the commands with the registry down."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vafa.cli.models import validation_table

VAFA = str(Path(sys.executable).with_name("vafa"))


def test_the_validation_table_puts_active_customers_first_and_everyone_beside() -> None:
    metrics = {
        "churn_model_roc_auc": 0.896,
        "churn_model_roc_auc_all": 0.968,
        "churn_model_base_rate": 0.259,
        "churn_model_base_rate_all": 0.619,
        "rows_churn_valid_active": 2014,
        "rows_churn_valid": 4397,
        "rows_spend_valid_active": 1457,
        "rows_spend_valid": 2784,
    }
    text = validation_table(metrics, 90)
    assert "bought within the 90 days" in text and "2,014 of 4,397 for churn" in text
    header, *rows = text.splitlines()[1:]
    assert header.split() == ["active", "all"]
    row = {line[:22].strip(): line[22:].split() for line in rows}
    assert row["churn ROC-AUC"] == ["0.896", "0.968"]
    assert row["observed churn rate"] == ["25.9%", "61.9%"]
    assert row["spend normalized Gini"] == ["nan", "nan"]  # absent figures say so


@pytest.mark.slow
def test_score_with_the_registry_down_fails_fast_naming_it(tmp_path: Path) -> None:
    from features.io import write_tables
    from features.synthetic import generate_tables

    write_tables(generate_tables(100, seed=1), tmp_path / "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MLFLOW_HTTP_REQUEST_")  # the defaults of configure_tracking
    }
    env["MLFLOW_TRACKING_URI"] = f"http://ops:hunter2@127.0.0.1:{port}"
    started = time.monotonic()
    result = subprocess.run(
        [VAFA, "score", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "scores")],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert f"http://***@127.0.0.1:{port} is unreachable (connection refused" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert took < 60  # MLflow's own retries took minutes; most of this is start-up
