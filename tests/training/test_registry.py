"""The registry edge: the pyfunc on `vafa features` output, promotion by hand, a registry down."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import mlflow
from features.io import write_tables
from features.schema import Tables
from tests.training.factories import AS_OF, OPTIONS
from training.jobs import run_training
from training.pyfunc import MissingInputsError
from training.registry import (
    CHAMPION,
    HTTP_DEFAULTS,
    MODEL_NAME,
    PromotionRefusedError,
    Registered,
    TrackingUnavailableError,
    configure_tracking,
    log_training_run,
    promote,
)
from training.train import TrainResult

VAFA = str(Path(sys.executable).with_name("vafa"))


def register(trained: TrainResult) -> Registered:
    configure_tracking(os.environ["MLFLOW_TRACKING_URI"])
    return log_training_run(trained, OPTIONS, fingerprint="f", data_dir="d", plots={})


@pytest.mark.slow
def test_the_registered_model_scores_what_vafa_features_writes(
    tables: Tables, trained: TrainResult, tmp_path: Path
) -> None:
    register(trained)
    write_tables(tables, tmp_path / "data")
    out = tmp_path / "features.parquet"
    command = ["features", "--data", str(tmp_path / "data"), "--as-of", "2026-11-01"]
    built = subprocess.run(
        [VAFA, *command, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    features = pd.read_parquet(out)
    assert any(isinstance(t, pd.CategoricalDtype) for t in features.dtypes)  # as written

    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
    scored = model.predict(features)
    assert_frame_equal(
        scored.reset_index(drop=True),
        trained.bundle.predict(features).reset_index(drop=True),
        check_dtype=False,
    )
    # A row without its features is refused, naming what is missing, not scored as average.
    with pytest.raises(MissingInputsError, match=r"recency_days.*n_orders|n_orders.*recency_days"):
        model.predict(pd.DataFrame({"customer_id": ["C0000001"]}))
    some_columns = features.head(5)[["customer_id", "recency_days", "n_orders", "net_spend"]]
    with pytest.raises(MissingInputsError, match=r"lack .*refund_count"):
        model.predict(some_columns)
    only_ids = features.head(4).copy()
    required = [c for c in only_ids.columns if c in model.metadata.metadata["required_inputs"]]
    only_ids.loc[only_ids.index[[0, 2]], required] = float("nan")
    with pytest.raises(MissingInputsError, match=r"2 feature row\(s\).*rows 0, 2"):
        model.predict(only_ids)
    # Optional tables' columns may be absent: a transactions-only feature row still scores.
    from features.build import build_features

    bare = build_features(Tables(tables.transactions), AS_OF)
    assert len(model.predict(bare)) == len(bare)


def _artifact_folder(version: str) -> Path:
    source = mlflow.MlflowClient().get_model_version(MODEL_NAME, version).source
    location = mlflow.get_logged_model(source.removeprefix("models:/")).artifact_location
    return Path(urlsplit(location).path)


def test_promote_refuses_a_version_whose_files_do_not_load(trained: TrainResult) -> None:
    first = register(trained)
    second = register(trained)
    assert first.promoted and not second.promoted
    (_artifact_folder(second.version) / "artifacts" / "bundle" / "churn.txt").unlink()
    refused = rf"version {second.version} cannot be promoted"
    with pytest.raises(PromotionRefusedError, match=refused):
        promote(second.version)
    champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, CHAMPION)
    assert str(champion.version) == first.version
    assert promote(first.version) == first.version


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_registry_fails_fast_naming_it_without_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in HTTP_DEFAULTS:  # MLflow's own defaults would wait minutes
        monkeypatch.setenv(name, "set")
        monkeypatch.delenv(name)
    port = _free_port()
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError) as raised:
        configure_tracking(f"http://analyst:s3cret@127.0.0.1:{port}")
    assert time.monotonic() - started < 30
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message and "connection refused" in message
    assert "s3cret" not in message and "analyst" not in message
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" in message


def test_the_environment_sets_longer_registry_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "45")
    with pytest.raises(TrackingUnavailableError, match="after 0 retries"):
        configure_tracking(f"http://127.0.0.1:{_free_port()}")
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "45"


def test_a_training_run_spans_the_training_and_describes_its_version(
    tables: Tables, trained: TrainResult, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    active_runs: list[str] = []

    def train_inside_a_run(*args: object, **kwargs: object) -> TrainResult:
        run = mlflow.active_run()
        active_runs.append(run.info.run_id if run is not None else "")
        return trained

    monkeypatch.setattr("training.jobs.train_models", train_inside_a_run)
    done = run_training(
        tables,
        AS_OF,
        OPTIONS,
        tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
        data_dir=str(tmp_path),
    )
    assert active_runs == [done.registered.run_id]  # the run was open while training

    client = mlflow.MlflowClient()
    version = client.get_model_version(MODEL_NAME, done.registered.version)
    tags = version.tags
    assert tags["as_of"] == "2026-11-01" and tags["churn_window_days"] == "90"
    assert tags["horizon_days"] == "365" and tags["promoted"] == "true"
    assert tags["promotion_decision"] == done.registered.decision
    assert float(tags["churn_model_roc_auc"]) == pytest.approx(
        trained.metrics["churn_model_roc_auc"], abs=1e-4
    )
    assert float(tags["churn_model_roc_auc_all"]) == pytest.approx(
        trained.metrics["churn_model_roc_auc_all"], abs=1e-4
    )
    assert tags["git_commit"] and tags["data_fingerprint"]
    assert "decision population" in version.description
    assert "2026-11-01" in version.description

    run = mlflow.get_run(done.registered.run_id)
    (dataset,) = run.inputs.dataset_inputs
    dataset_tags = {t.key: t.value for t in dataset.tags}
    assert dataset_tags["fingerprint"] == tags["data_fingerprint"]
    assert dataset_tags["rows_transactions"] == str(len(tables.transactions))
    assert str(tmp_path) in dataset.dataset.source
