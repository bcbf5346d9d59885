"""The `vafa` command as a user runs it: a real process, its output and its exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

VAFA = str(Path(sys.executable).with_name("vafa"))


def vafa(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VAFA, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.mark.parametrize(
    "command",
    [
        "",
        "demo",
        "generate",
        "validate",
        "features",
        "train",
        "backtest",
        "promote",
        "score",
        "campaign",
        "profiles",
        "report",
        "serve",
    ],
)
def test_every_command_has_help(command: str) -> None:
    from typer.testing import CliRunner

    from vafa.cli.app import app

    result = CliRunner().invoke(app, [*([command] if command else []), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.slow
def test_generate_validate_features(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "features.csv"
    assert vafa("generate", "--customers", "300", "--out", str(data), "--seed", "1").returncode == 0
    checked = vafa("validate", "--data", str(data))
    assert checked.returncode == 0 and "OK" in checked.stdout
    built = vafa("features", "--data", str(data), "--as-of", "2026-06-01", "--out", str(out))
    assert built.returncode == 0, built.stderr
    features = pd.read_csv(out)
    transactions = pd.read_parquet(data / "transactions.parquet")
    before = transactions[transactions["ts"] < "2026-06-01"]
    assert sorted(features["customer_id"]) == sorted(before["customer_id"].unique())
    assert "recency_days" in features.columns


def test_bad_data_exits_3_naming_file_column_and_rows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "transactions.csv").write_text(
        "customer_id,ts,amount\nc1,2024-01-01,5\nc2,yesterday,7\n,2024-01-02,x\n"
    )
    result = vafa("features", "--data", str(data), "--out", str(tmp_path / "f.parquet"))
    assert result.returncode == 3
    for needle in ("transactions.csv", "'ts'", "yesterday", "line 3", "'amount'", "customer_id"):
        assert needle in result.stderr, needle
    assert not (tmp_path / "f.parquet").exists()  # nothing half-written

    quarantine = tmp_path / "quarantine"
    kept = vafa(
        "features",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "f.parquet"),
        "--quarantine",
        str(quarantine),
    )
    assert kept.returncode == 0, kept.stderr
    assert len(pd.read_csv(quarantine / "transactions.csv")) == 2
    assert pd.read_parquet(tmp_path / "f.parquet")["customer_id"].tolist() == ["c1"]


def test_bad_options_exit_2(tmp_path: Path) -> None:
    result = vafa("features", "--data", str(tmp_path), "--out", str(tmp_path / "f.txt"))
    assert result.returncode == 2
    assert "--out" in result.stderr


@pytest.mark.slow
def test_demo_trains_a_champion_and_backtest_compares_baselines(tmp_path: Path) -> None:
    team = tmp_path / "team"  # a registry and store the demo must leave alone
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{team / 'mlflow.db'}",
        "VAFA_STORE_URL": f"sqlite:///{team / 'scores.db'}",
    }
    demo = vafa(
        "demo", "--customers", "700", "--out", str(tmp_path / "demo"), "--trials", "1", env=env
    )
    assert demo.returncode == 0, demo.stderr
    assert "promoted: there was no champion" in demo.stdout
    assert not team.exists()
    assert (tmp_path / "demo" / "mlflow" / "mlflow.db").is_file()
    assert (tmp_path / "demo" / "store" / "scores.db").is_file()
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'demo'}" in demo.stdout
    assert "the riskiest valuable customers" in demo.stdout and "Campaign plan" in demo.stdout
    run = tmp_path / "demo" / "scores" / "as_of=2026-11-01"
    scores = pd.read_parquet(run / "scores.parquet")
    contract = [
        "customer_id",
        "as_of",
        "churn_probability",
        "predicted_spend",
        "clv",
        "value_at_risk",
        "segment",
        "recommended_action",
        "reasons",
        "model_version",
    ]
    assert set(contract) <= set(scores.columns)
    assert scores["customer_id"].is_unique and scores["churn_probability"].between(0, 1).all()
    assert set(scores["model_version"]) == {"1"}
    # Reasons wherever someone will read them: not behind no_action or the newsletter.
    acted = ~scores["recommended_action"].isin(["no_action", "newsletter"])
    assert acted.any() and (scores.loc[acted, "reasons"] != "").all()
    (plan_csv,) = (tmp_path / "demo" / "scores" / "campaigns" / "as_of=2026-11-01").glob("*.csv")
    assert pd.read_csv(plan_csv)["customer_id"].isin(scores["customer_id"]).all()

    plan = vafa(
        "campaign",
        "--scores",
        str(tmp_path / "demo" / "scores"),
        "--budget",
        "30",
        "--out",
        str(tmp_path / "plan.parquet"),
        env=env,
    )
    assert plan.returncode == 0, plan.stderr
    assert pd.read_parquet(tmp_path / "plan.parquet")["cost"].sum() <= 30 + 1e-9

    backtest = vafa(
        "backtest",
        "--data",
        str(tmp_path / "demo" / "data"),
        "--as-of",
        "2026-05-01",
        "--horizon-days",
        "180",
        "--trials",
        "1",
        env=env,
    )
    assert backtest.returncode == 0, backtest.stderr
    for needle in ("recency", "bgnbd", "last_period", "bgnbd_gg", "roc_auc", "decile_mape"):
        assert needle in backtest.stdout

    # The demo's registry, as its output says: VAFA_HOME=OUT.
    own = {"VAFA_HOME": str(tmp_path / "demo"), "MLFLOW_TRACKING_URI": "", "VAFA_STORE_URL": ""}
    promoted = vafa("promote", "--version", "1", env=own)
    assert promoted.returncode == 0 and "version 1" in promoted.stdout
    unknown = vafa("promote", "--version", "99", env=own)
    assert unknown.returncode == 1 and "error" in unknown.stderr
