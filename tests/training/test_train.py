"""Training: out-of-time splits, reproducibility, planted structure, registry and promotion."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from features.build import build_features
from features.schema import Tables
from tests.training.factories import AS_OF, OPTIONS
from training.datasets import build_training_data, plan_cutoffs
from training.registry import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAME,
    configure_tracking,
    load_bundle,
    log_training_run,
)
from training.train import TrainResult, train_models
from training.tuning import MAX_DEPTH, suggest_params


def test_validation_is_strictly_later_than_training(trained: TrainResult) -> None:
    for plan, window in ((trained.data.churn_plan, 90), (trained.data.spend_plan, 365)):
        days = pd.Timedelta(days=window)
        assert plan.train, "at least one training snapshot"
        assert max(plan.train) + days <= plan.valid  # training labels end before validation starts
        assert plan.valid + days <= AS_OF  # validation labels end by the training date
    data = trained.data
    assert set(data.churn_valid["as_of"]) == {data.churn_plan.valid}
    assert data.churn_train["as_of"].max() < data.churn_valid["as_of"].min()
    assert data.spend_train["as_of"].max() < data.spend_valid["as_of"].min()


def test_training_data_ignores_rows_on_or_after_the_training_date(tables: Tables) -> None:
    late = tables.transactions.assign(ts=AS_OF + pd.Timedelta(days=3), amount=1e9, order_id="LATE")
    tampered = replace(tables, transactions=pd.concat([tables.transactions, late.head(500)]))
    kwargs = {"churn_window_days": 90, "horizon_days": 365, "margin_rate": 0.3, "n_snapshots": 2}
    clean = build_training_data(tables, AS_OF, **kwargs)
    dirty = build_training_data(tampered, AS_OF, **kwargs)
    for split in ("churn_train", "churn_valid", "spend_train", "spend_valid"):
        assert_frame_equal(getattr(clean, split), getattr(dirty, split))


def test_a_short_history_plans_shorter_windows_instead_of_refusing() -> None:
    plan = plan_cutoffs(
        pd.Timestamp("2025-01-01"), pd.Timestamp("2026-07-01"), 365, 6, 30, "horizon"
    )
    assert (plan.rung, plan.label_days) == ("short_windows", 243)
    plan = plan_cutoffs(
        pd.Timestamp("2025-01-01"), pd.Timestamp("2026-07-01"), 180, 6, 30, "horizon"
    )
    assert plan.valid == pd.Timestamp("2026-01-02") and plan.train[-1] == pd.Timestamp("2025-07-06")
    assert plan.rung == "out_of_time"


def test_search_space_is_one_function() -> None:
    import optuna

    fixed = {
        "learning_rate": 0.1,
        "max_depth": 6,
        "num_leaves": 15,
        "min_child_samples": 20,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.9,
        "lambda_l2": 1.0,
    }
    assert suggest_params(optuna.trial.FixedTrial(fixed), "binary") == fixed
    tweedie = suggest_params(
        optuna.trial.FixedTrial({**fixed, "tweedie_variance_power": 1.3}), "tweedie"
    )
    assert tweedie["tweedie_variance_power"] == 1.3


def test_models_beat_the_naive_baselines_on_planted_data(trained: TrainResult) -> None:
    m = trained.metrics
    assert m["churn_model_roc_auc"] > m["churn_recency_roc_auc"]
    assert m["churn_model_brier"] < m["churn_recency_brier"]
    assert m["spend_model_normalized_gini"] > m["spend_last_period_normalized_gini"]
    assert abs(m["spend_model_total_error"]) < 0.15


def test_trees_stay_within_the_depth_cap(trained: TrainResult) -> None:
    # Reasons are TreeSHAP, whose cost grows with depth squared: the cap is a speed contract.
    def depth(node: dict) -> int:
        if "split_index" not in node:
            return 0
        return 1 + max(depth(node["left_child"]), depth(node["right_child"]))

    boosters = [trained.bundle.churn, *trained.bundle.spend.boosters.values()]
    depths = [
        depth(tree["tree_structure"]) for b in boosters for tree in b.dump_model()["tree_info"]
    ]
    assert max(depths) <= MAX_DEPTH


def test_same_seed_same_model(tables: Tables, trained: TrainResult) -> None:
    again = train_models(tables, AS_OF, OPTIONS)
    assert again.metrics == pytest.approx(trained.metrics, nan_ok=True)
    assert again.params == trained.params


@pytest.fixture(scope="module")
def scored(tables: Tables, trained: TrainResult) -> pd.DataFrame:
    features = build_features(tables, AS_OF, event_types=trained.bundle.spec.event_types)
    return features


def test_a_more_recent_purchase_lowers_churn_risk(
    trained: TrainResult, scored: pd.DataFrame
) -> None:
    lapsed = scored[scored["recency_days"].between(120, 400)]
    fresher = lapsed.assign(
        recency_days=5.0,
        overdue_ratio=lapsed["overdue_ratio"] * 5.0 / lapsed["recency_days"],
        orders_30d=lapsed["orders_30d"] + 1,
        orders_90d=lapsed["orders_90d"] + 1,
    )
    before = trained.bundle.predict(lapsed)["churn_probability"]
    after = trained.bundle.predict(fresher)["churn_probability"]
    assert after.mean() < before.mean() - 0.1


def test_unresolved_tickets_score_riskier(trained: TrainResult, scored: pd.DataFrame) -> None:
    """What the generator planted, the model finds: the same customers with open tickets."""
    calm = scored[(scored["unresolved_tickets"] == 0) & (scored["recency_days"] < 60)]
    troubled = calm.assign(
        unresolved_tickets=2.0,
        support_ticket_total=calm["support_ticket_total"] + 2,
        support_ticket_30d=calm["support_ticket_30d"] + 2,
        support_ticket_90d=calm["support_ticket_90d"] + 2,
        days_since_support_ticket=10.0,
        complaint_total=calm["complaint_total"] + 1,
        complaint_90d=calm["complaint_90d"] + 1,
        days_since_complaint=12.0,
    )
    before = trained.bundle.predict(calm)["churn_probability"].mean()
    after = trained.bundle.predict(troubled)["churn_probability"].mean()
    assert after > before


def test_renaming_customers_changes_nothing_and_values_are_sane(
    trained: TrainResult, scored: pd.DataFrame
) -> None:
    renamed = scored.assign(customer_id="X" + scored["customer_id"])
    a, b = trained.bundle.predict(scored), trained.bundle.predict(renamed)
    assert_frame_equal(a.drop(columns="customer_id"), b.drop(columns="customer_id"))
    assert (a["clv"] >= 0).all() and (a["predicted_spend"] >= 0).all()
    assert a["churn_probability"].between(0, 1).all()


def test_registry_promotes_by_the_stated_rule(trained: TrainResult, tmp_path, monkeypatch) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    configure_tracking(uri)
    first = log_training_run(trained, OPTIONS, fingerprint="f", data_dir="d", plots={})
    assert first.promoted and "no champion" in first.decision

    worse = dataclasses.replace(
        trained,
        metrics=trained.metrics | {"churn_model_brier": 0.99, "spend_model_normalized_gini": -1.0},
    )
    second = log_training_run(worse, OPTIONS, fingerprint="f", data_dir="d", plots={})
    assert not second.promoted and "does not beat" in second.decision

    better = dataclasses.replace(
        trained,
        metrics=trained.metrics | {"churn_model_brier": 0.0, "spend_model_normalized_gini": 1.0},
    )
    third = log_training_run(better, OPTIONS, fingerprint="f", data_dir="d", plots={})
    assert third.promoted and "beats the champion" in third.decision

    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version) == third.version
    assert str(client.get_model_version_by_alias(MODEL_NAME, CHALLENGER).version) == third.version
    bundle, version = load_bundle(CHAMPION)
    assert version == third.version
    # A promotion between resolving the alias and downloading must not relabel the bundle.
    downloaded: list[str] = []
    download = mlflow.artifacts.download_artifacts

    def promote_first_then_download(artifact_uri: str, **kwargs: object) -> str:
        client.set_registered_model_alias(MODEL_NAME, CHAMPION, first.version)
        downloaded.append(artifact_uri)
        return download(artifact_uri, **kwargs)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", promote_first_then_download)
    _, racing = load_bundle(CHAMPION)
    assert racing == third.version and downloaded == [f"models:/{MODEL_NAME}/{third.version}"]
    monkeypatch.undo()
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, third.version)
    features = trained.data.churn_valid.head(50)
    assert_frame_equal(bundle.predict(features), trained.bundle.predict(features))
    assert (
        bundle.config["churn_window_days"] == 90
        and bundle.spec.columns == trained.bundle.spec.columns
    )
    run = mlflow.get_run(third.run_id)
    assert run.data.params["data_fingerprint"] == "f"
    assert "spend_bgnbd_gg_normalized_gini" in run.data.metrics
    assert np.isfinite(run.data.metrics["churn_recency_roc_auc"])


@pytest.mark.slow
def test_tracking_against_a_real_mlflow_server(trained: TrainResult, tmp_path) -> None:
    """The team-server path: runs, registry and aliases over HTTP, not only the embedded store."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("w"),
    )
    try:
        # MLflow's server starts slowly on a busy 2-core machine: allow minutes, not seconds.
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError((tmp_path / "server.log").read_text()[-2000:]) from None
                time.sleep(0.5)
        configure_tracking(f"http://127.0.0.1:{port}")
        registered = log_training_run(trained, OPTIONS, fingerprint="f", data_dir="d", plots={})
        assert registered.promoted
        bundle, version = load_bundle(CHAMPION)
        assert version == registered.version
        features = trained.data.churn_valid.head(20)
        assert_frame_equal(bundle.predict(features), trained.bundle.predict(features))
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_bundle_carries_the_reference_of_its_population(
    tables: Tables, trained: TrainResult, tmp_path
) -> None:
    reference = trained.bundle.reference
    assert reference is not None and reference["as_of"] == str(AS_OF.date())
    features = build_features(tables, AS_OF)
    assert reference["customers"] == len(features)
    assert set(trained.bundle.spec.columns) <= set(reference["features"])
    assert {"churn_probability", "predicted_spend", "clv"} <= set(reference["scores"])
    for hist in reference["features"].values():
        assert sum(hist["shares"]) == pytest.approx(1.0, abs=1e-4)
    from training.model import ModelBundle

    assert ModelBundle.load(trained.bundle.save(tmp_path / "b")).reference == reference


def test_metrics_are_over_the_decision_population_with_all_customers_beside(
    trained: TrainResult,
) -> None:
    from training.metrics import churn_metrics, spend_metrics

    m = trained.metrics
    for target, frame, metrics_of, prediction in (
        ("churn", trained.data.churn_valid, churn_metrics, "p"),
        ("spend", trained.data.spend_valid, spend_metrics, "pred"),
    ):
        rows = trained.valid_predictions[target]
        active = rows["active"].to_numpy()
        # The documented rule (features.population): bought within the churn window.
        assert (active == (frame["recency_days"] <= 90).to_numpy()).all()
        assert 0 < active.sum() < len(active)
        among_active = metrics_of(rows["y"][active], rows[prediction][active])
        everyone = metrics_of(rows["y"], rows[prediction])
        for name, value in among_active.items():
            assert m[f"{target}_model_{name}"] == pytest.approx(value, nan_ok=True)
            assert m[f"{target}_model_{name}_all"] == pytest.approx(everyone[name], nan_ok=True)
        assert m[f"rows_{target}_valid_active"] == active.sum()
    # Customers gone long ago are most of the validation set and flatter every figure.
    assert m["churn_model_base_rate_all"] > m["churn_model_base_rate"] + 0.2
    assert m["churn_model_roc_auc_all"] > m["churn_model_roc_auc"]
    for baseline in ("churn_recency_roc_auc", "churn_bgnbd_brier", "spend_last_period_mae"):
        assert np.isfinite(m[baseline]) and np.isfinite(m[f"{baseline}_all"])
        assert m[baseline] != m[f"{baseline}_all"]


def test_spend_is_levelled_at_its_base_total_times_the_season(
    tables: Tables, trained: TrainResult
) -> None:
    """Three years of a shop with a December peak: last year's level as of T is in the bundle."""
    from training.seasons import last_year_level

    season = trained.bundle.config["season"]
    expected = last_year_level(tables.before(AS_OF), AS_OF, OPTIONS.horizon_days, "bgnbd")
    assert expected is not None and season["index"] == pytest.approx(expected)
    assert season["validation_index"] is not None  # the validation cutoff has the history too
    features = build_features(tables, AS_OF)
    bases = trained.bundle.btyd_bases
    assert bases is not None
    base_total = np.exp(bases["spend"].spend_margin(features, OPTIONS.horizon_days)).sum()
    total = trained.bundle.predict(features)["predicted_spend"].sum()
    assert total / base_total == pytest.approx(expected if season["used"] else 1.0, rel=1e-6)
    assert trained.metrics["spend_season_used"] == float(season["used"])
    assert trained.bundle.config["spend_intervals"]["level_shift_sd"] > 0
