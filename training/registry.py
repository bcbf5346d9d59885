"""MLflow at the edge: tracking set-up, run logging, the registered bundle and its aliases."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema, TensorSpec

import mlflow
from mlflow import MlflowClient
from training.model import ModelBundle
from training.train import TrainOptions, TrainResult

log = logging.getLogger(__name__)

MODEL_NAME = "vafa"
EXPERIMENT = "vafa"
CHAMPION, CHALLENGER = "champion", "challenger"
BUNDLE_ARTIFACT = "bundle"
PINNED = ("lightgbm", "numpy", "pandas", "polars", "pyarrow", "scikit-learn", "mlflow")


def configure_tracking(tracking_uri: str, experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id.

    For a local SQLite store, artifacts live in `artifacts/` beside the database (not in the
    working directory, where MLflow would put them otherwise).
    """
    mlflow.set_tracking_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        mlflow.set_experiment(experiment_id=found.experiment_id)
        return str(found.experiment_id)
    location = None
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        location = (db.parent / "artifacts").resolve().as_uri()
    experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


def optuna_storage(tracking_uri: str) -> str | None:
    """Where studies are kept so they can be reopened: beside a local SQLite store."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return f"sqlite:///{db.parent / 'optuna.db'}"
    return None


class VafaModel(PythonModel):
    """The registered pyfunc: feature rows in, churn probability, spend and CLV out."""

    def load_context(self, context: Any) -> None:
        """Load the bundle files logged beside the model."""
        self.bundle = ModelBundle.load(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Score feature rows as `features.build.build_features` returns them."""
        return self.bundle.predict(model_input)


@dataclass(frozen=True)
class Registered:
    """The outcome of a training run in the registry."""

    run_id: str
    version: str
    promoted: bool
    decision: str


def log_training_run(
    result: TrainResult,
    options: TrainOptions,
    *,
    fingerprint: str,
    data_dir: str,
    plots: dict[str, Path],
    run_name: str | None = None,
) -> Registered:
    """Log a training run, register its bundle as `challenger`, and promote it if it wins."""
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({f"option_{k}": v for k, v in asdict(options).items()})
        mlflow.log_params(
            {
                "data_dir": data_dir,
                "data_fingerprint": fingerprint,
                **{k: v for k, v in result.bundle.config.items() if k != "spend_model"},
                "spend_model": result.bundle.config["spend_model"],
            }
        )
        for model, params in result.params.items():
            mlflow.log_params({f"best_{model}_{k}": v for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in result.metrics.items() if np.isfinite(v)})
        mlflow.log_metrics({k: float(v) for k, v in result.data.row_counts().items()})
        mlflow.log_metrics(result.timings)
        mlflow.log_dict(result.bundle.spec.to_dict(), "feature_spec.json")
        mlflow.log_dict(_search_space(result), "search_space.json")
        for name, study in result.studies.items():
            mlflow.log_table(study.trials_dataframe().astype(str), f"optuna/{name}_trials.json")
        for path in plots.values():
            mlflow.log_artifact(str(path), "plots")
        version = _log_bundle(result)
        client = MlflowClient()
        client.set_registered_model_alias(MODEL_NAME, CHALLENGER, version)
        promoted, decision = decide_promotion(client, result)
        mlflow.set_tag("promotion_decision", decision)
        mlflow.log_metric("promoted", float(promoted))
        if promoted:
            client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
        log.info("model version %s: %s", version, decision)
        return Registered(run.info.run_id, version, promoted, decision)


def _search_space(result: TrainResult) -> dict[str, Any]:
    return {
        name: {k: repr(d) for k, d in study.best_trial.distributions.items()}
        for name, study in result.studies.items()
    }


def _log_bundle(result: TrainResult) -> str:
    """Log the bundle as a pyfunc model with signature and example; register it; return version."""
    example = result.data.churn_valid[["customer_id", *result.bundle.spec.columns]].head(3)
    example = _json_safe(example)
    output = result.bundle.predict(example)
    with tempfile.TemporaryDirectory() as tmp:
        folder = result.bundle.save(Path(tmp) / BUNDLE_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
            artifacts={BUNDLE_ARTIFACT: str(folder)},
            signature=signature(result.bundle, output),
            input_example=example,
            registered_model_name=MODEL_NAME,
            pip_requirements=[f"{p}=={version(p)}" for p in PINNED],
        )
    return str(info.registered_model_version)


def signature(bundle: ModelBundle, output: pd.DataFrame) -> ModelSignature:
    """Every feature optional (a table may be absent), categoricals as strings, ids required."""
    inputs: list[ColSpec | TensorSpec] = [ColSpec("string", "customer_id")]
    for column in bundle.spec.columns:
        kind = "string" if column in bundle.spec.categories else "double"
        inputs.append(ColSpec(kind, column, required=False))
    outputs: list[ColSpec | TensorSpec] = [
        ColSpec("string" if c == "customer_id" else "double", c) for c in output.columns
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def _json_safe(example: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as plain strings: MLflow's example and signature handle those everywhere."""
    out = example.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].astype("str").where(out[column].notna(), None)
    return out


def decide_promotion(client: MlflowClient, result: TrainResult) -> tuple[bool, str]:
    """The stated rule: a challenger becomes champion when there is none, or when it beats it.

    "Beats" means: on the challenger's out-of-time validation snapshots, the same rows for both,
    a churn Brier score no worse and a spend normalized Gini no worse, and one of them better.
    """
    try:
        champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    except MlflowException:
        return True, "promoted: there was no champion"
    bundle = load_bundle(CHAMPION)[0]
    from training.metrics import churn_metrics, spend_metrics

    data = result.data
    old_churn = churn_metrics(
        data.churn_valid["churned"], bundle.predict(data.churn_valid)["churn_probability"]
    )
    old_spend = spend_metrics(
        data.spend_valid["future_spend"], bundle.predict(data.spend_valid)["predicted_spend"]
    )
    new_brier, old_brier = result.metrics["churn_model_brier"], old_churn["brier"]
    new_gini, old_gini = result.metrics["spend_model_normalized_gini"], old_spend["normalized_gini"]
    no_worse = new_brier <= old_brier and new_gini >= old_gini
    better = new_brier < old_brier or new_gini > old_gini
    figures = (
        f"churn Brier {new_brier:.4f} vs {old_brier:.4f}, "
        f"spend normalized Gini {new_gini:.4f} vs {old_gini:.4f} (champion v{champion.version})"
    )
    if no_worse and better:
        return True, f"promoted: beats the champion on the same out-of-time rows: {figures}"
    return False, f"kept as challenger: does not beat the champion: {figures}"


def promote(version: str | None = None) -> str:
    """Give the `champion` alias to a version (default: the current challenger); returns it."""
    client = MlflowClient()
    if version is None:
        version = str(client.get_model_version_by_alias(MODEL_NAME, CHALLENGER).version)
    client.get_model_version(MODEL_NAME, version)  # raises for an unknown version
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    return version


def load_bundle(alias: str = CHAMPION) -> tuple[ModelBundle, str]:
    """The bundle registered under an alias, and its version.

    Raises:
        LookupError: no model carries that alias.
    """
    client = MlflowClient()
    try:
        found = client.get_model_version_by_alias(MODEL_NAME, alias)
    except MlflowException as exc:
        raise LookupError(
            f"no model has the alias '{alias}' in {mlflow.get_tracking_uri()}: run `vafa train`"
        ) from exc
    # By the version just resolved, not the alias again: a promotion in between would
    # otherwise label one version's scores with another's number.
    root = mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}/{found.version}")
    return ModelBundle.load(Path(root) / "artifacts" / BUNDLE_ARTIFACT), str(found.version)
