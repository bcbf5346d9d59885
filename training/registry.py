"""MLflow at the edge: tracking set-up, run logging, the registered bundle and its aliases."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

import mlflow
from mlflow import MlflowClient
from training.model import ModelBundle
from training.promotion import ActionsOf, Decision, judge
from training.pyfunc import BUNDLE_ARTIFACT, json_safe, required_inputs, signature
from training.pyfunc import VafaModel as VafaModel  # the entry of models logged before pyfunc.py
from training.train import TrainOptions, TrainResult

log = logging.getLogger(__name__)

MODEL_NAME = "vafa"
EXPERIMENT = "vafa"
CHAMPION, CHALLENGER = "champion", "challenger"
PINNED = ("lightgbm", "numpy", "pandas", "polars", "pyarrow", "scikit-learn", "mlflow")
# MLflow's own defaults (120 s a request, 7 retries with doubling back-off) make a command wait
# minutes for a registry that is down. These apply unless the environment sets them.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
REPO_ROOT = Path(__file__).resolve().parent.parent


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking store did not answer; the message names it without credentials."""


class PromotionRefusedError(RuntimeError):
    """A version cannot become champion (its files do not load); the alias is unchanged."""


def redact(uri: str) -> str:
    """A URI without user, password or query (which may carry tokens)."""
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None and not parts.query:
        return uri
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def configure_tracking(tracking_uri: str, experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id.

    Registry calls get short timeouts and few retries (`HTTP_DEFAULTS`; the environment's
    `MLFLOW_HTTP_REQUEST_TIMEOUT`, `MLFLOW_HTTP_REQUEST_MAX_RETRIES` and
    `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR` win), so a store that is down fails the command in
    seconds. For a local SQLite store, artifacts live in `artifacts/` beside the database (not
    in the working directory, where MLflow would put them otherwise).

    Raises:
        TrackingUnavailableError: the store did not answer.
    """
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    mlflow.set_tracking_uri(tracking_uri)
    if not tracking_uri.startswith(("http://", "https://")):
        return _ensure_experiment(tracking_uri, experiment)
    try:
        return _ensure_experiment(tracking_uri, experiment)
    except MlflowException as exc:
        raise TrackingUnavailableError(_unavailable(tracking_uri, exc)) from exc


def _ensure_experiment(tracking_uri: str, experiment: str) -> str:
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


def _unavailable(tracking_uri: str, exc: Exception) -> str:
    """Why the store did not answer, in words, naming it without credentials."""
    text = str(exc)
    if "refused" in text.lower():
        cause = "connection refused"
    elif "timed out" in text.lower() or "timeout" in text.lower():
        cause = f"no answer within {os.environ['MLFLOW_HTTP_REQUEST_TIMEOUT']} s"
    elif "resolve" in text.lower() or "name or service" in text.lower():
        cause = "unknown host"
    else:
        cause = f"{type(exc).__name__}: {text.replace(tracking_uri, redact(tracking_uri))[:300]}"
    retries = os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    return (
        f"the MLflow tracking store {redact(tracking_uri)} is unreachable ({cause}, after "
        f"{retries} retries); check MLFLOW_TRACKING_URI, or wait longer with "
        "MLFLOW_HTTP_REQUEST_TIMEOUT and MLFLOW_HTTP_REQUEST_MAX_RETRIES"
    )


def optuna_storage(tracking_uri: str) -> str | None:
    """Where studies are kept so they can be reopened: beside a local SQLite store."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return f"sqlite:///{db.parent / 'optuna.db'}"
    return None


@dataclass(frozen=True)
class Registered:
    """The outcome of a training run in the registry.

    Attributes:
        shift: how the challenger's scores differ from the champion's ("" without a champion
            or when the champion could not be judged).
    """

    run_id: str
    version: str
    promoted: bool
    decision: str
    shift: str = ""


@contextmanager
def _run(run_name: str | None) -> Iterator[Any]:
    """The active run (a job that started it before training), else a new one."""
    active = mlflow.active_run()
    if active is not None:
        yield active
        return
    with mlflow.start_run(run_name=run_name) as run:
        yield run


def log_training_run(
    result: TrainResult,
    options: TrainOptions,
    *,
    fingerprint: str,
    data_dir: str,
    plots: dict[str, Path],
    run_name: str | None = None,
    actions: ActionsOf | None = None,
) -> Registered:
    """Log a training run, register its bundle as `challenger`, and promote it if it wins.

    Logged into the active run when there is one (`training.jobs` starts it before training,
    so the run spans the work), else into a new run called `run_name`. The version carries a
    description and tags: dates, windows, headline metrics, the decision, commit and data.

    Args:
        result: the trained bundle, its metrics and the tables it was trained from.
        options: the training options, logged as parameters.
        fingerprint: `training.datasets.data_fingerprint` of the tables.
        data_dir: where the tables came from.
        plots: PNG files to log under `plots/`.
        run_name: the name of a new run.
        actions: the recommended action of feature rows, to report how actions would move
            (`training.promotion.score_shift`); None: scores only.
    """
    with _run(run_name) as run:
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
        _log_data(result, fingerprint, data_dir)
        mlflow.log_dict(result.bundle.spec.to_dict(), "feature_spec.json")
        mlflow.log_dict(_search_space(result), "search_space.json")
        for name, study in result.studies.items():
            mlflow.log_table(study.trials_dataframe().astype(str), f"optuna/{name}_trials.json")
        for path in plots.values():
            mlflow.log_artifact(str(path), "plots")
        version = _log_bundle(result)
        client = MlflowClient()
        client.set_registered_model_alias(MODEL_NAME, CHALLENGER, version)
        decision = decide_promotion(client, result, actions)
        mlflow.set_tag("promotion_decision", decision.text)
        mlflow.log_metric("promoted", float(decision.promoted))
        mlflow.log_metrics(decision.metrics)
        shift = decision.shift.render() if decision.shift is not None else ""
        if decision.shift is not None:
            mlflow.log_metrics(decision.shift.metrics)
            mlflow.log_text(shift, "promotion/score_shift.txt")
            mlflow.set_tag("large_score_shifts", "; ".join(decision.shift.large) or "none")
        _describe_version(client, version, result, decision, fingerprint, data_dir)
        if decision.promoted:
            client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
        log.info("model version %s: %s", version, decision.text)
        return Registered(run.info.run_id, version, decision.promoted, decision.text, shift)


def _log_data(result: TrainResult, fingerprint: str, data_dir: str) -> None:
    """The training tables as an MLflow dataset: where they are, their fingerprint, their rows."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    local = "://" not in data_dir
    with warnings.catch_warnings():  # MLflow registers its local source twice and says so
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(Path(data_dir).resolve()) if local else data_dir)
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    tags = {"fingerprint": fingerprint}
    if result.tables is not None:
        for name in ("transactions", "customers", "events"):
            table = getattr(result.tables, name)
            if table is not None:
                tags[f"rows_{name}"] = str(len(table))
    # MetaDataset leaves `profile` abstract in MLflow's typing but answers None at run time.
    dataset = MetaDataset(source, name="vafa-tables", digest=digest)  # type: ignore[abstract]
    mlflow.log_input(dataset, "training", tags)


def _describe_version(
    client: MlflowClient,
    version: str,
    result: TrainResult,
    decision: Decision,
    fingerprint: str,
    data_dir: str,
) -> None:
    """A version's description and tags: what it was trained on and how it did."""
    config, m = result.bundle.config, result.metrics
    window = config["churn_window_days"]
    commit = git_commit()
    headline = {
        "churn_model_roc_auc": m.get("churn_model_roc_auc", np.nan),
        "churn_model_brier": m.get("churn_model_brier", np.nan),
        "churn_model_top_decile_lift": m.get("churn_model_top_decile_lift", np.nan),
        "spend_model_normalized_gini": m.get("spend_model_normalized_gini", np.nan),
        "churn_model_roc_auc_all": m.get("churn_model_roc_auc_all", np.nan),
    }
    tags = {
        "as_of": config["trained_as_of"],
        "churn_window_days": str(window),
        "horizon_days": str(config["horizon_days"]),
        "data_dir": data_dir,
        "data_fingerprint": fingerprint,
        "git_commit": commit or "unknown",
        "promoted": str(decision.promoted).lower(),
        "promotion_decision": decision.text,
        **{k: f"{v:.4f}" for k, v in headline.items()},
    }
    for key, value in tags.items():
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    description = (
        f"Trained as of {config['trained_as_of']} on {data_dir} (fingerprint {fingerprint}), "
        f"churn window {window} days, spend horizon {config['horizon_days']} days"
        f"{f', code {commit}' if commit else ''}.\n"
        f"Out of time, on the customers who bought within {window} days (the decision "
        f"population): churn ROC-AUC {headline['churn_model_roc_auc']:.3f}, Brier "
        f"{headline['churn_model_brier']:.4f}, top-decile lift "
        f"{headline['churn_model_top_decile_lift']:.2f}; spend normalized Gini "
        f"{headline['spend_model_normalized_gini']:.3f}. On all customers: churn ROC-AUC "
        f"{headline['churn_model_roc_auc_all']:.3f}.\n{decision.text}"
    )
    client.update_model_version(MODEL_NAME, version, description=description)


def git_commit() -> str | None:
    """The checkout's commit (`-dirty` with uncommitted changes), None outside a checkout."""
    if not (REPO_ROOT / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if changes else head or None


def _search_space(result: TrainResult) -> dict[str, Any]:
    return {
        name: {k: repr(d) for k, d in study.best_trial.distributions.items()}
        for name, study in result.studies.items()
    }


def _log_bundle(result: TrainResult) -> str:
    """Log the bundle as a pyfunc model with signature and example; register it; return version."""
    example = result.data.churn_valid[["customer_id", *result.bundle.spec.columns]].head(3)
    example = json_safe(example)
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
            metadata={"required_inputs": required_inputs(result.bundle.spec)},
        )
    return str(info.registered_model_version)


def decide_promotion(
    client: MlflowClient, result: TrainResult, actions: ActionsOf | None = None
) -> Decision:
    """Promote when there is no champion; else by `training.promotion.judge`.

    A champion whose files do not load is not replaced automatically either: the decision
    says so, and `vafa promote` replaces it by hand.
    """
    try:
        champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    except MlflowException:
        return Decision(True, "promoted: there was no champion")
    try:
        bundle = _download_bundle(str(champion.version))
    except Exception as exc:  # any failure to read it: judged by a person, not here
        return Decision(
            False,
            f"kept as challenger: the champion v{champion.version} could not be loaded to be "
            f"judged ({type(exc).__name__}); promote by hand (`vafa promote`)",
        )
    return judge(result, bundle, str(champion.version), actions)


def promote(version: str | None = None) -> str:
    """Give the `champion` alias to a version (default: the current challenger); returns it.

    Raises:
        MlflowException: no such version (or no challenger).
        PromotionRefusedError: the version's files do not load; the champion is unchanged.
    """
    client = MlflowClient()
    if version is None:
        version = str(client.get_model_version_by_alias(MODEL_NAME, CHALLENGER).version)
    client.get_model_version(MODEL_NAME, version)  # raises for an unknown version
    try:
        _download_bundle(version)
    except Exception as exc:  # whatever is wrong with the files, the alias must not move
        raise PromotionRefusedError(
            f"version {version} cannot be promoted: its files do not load "
            f"({type(exc).__name__}: {str(exc)[:300]}); the champion is unchanged"
        ) from exc
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    client.set_model_version_tag(MODEL_NAME, version, "promoted", "true")
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    client.set_model_version_tag(MODEL_NAME, version, "promoted_by_hand", stamp)
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
            f"no model has the alias '{alias}' in {redact(mlflow.get_tracking_uri())}: "
            "run `vafa train`"
        ) from exc
    # By the version just resolved, not the alias again: a promotion in between would
    # otherwise label one version's scores with another's number.
    return _download_bundle(str(found.version)), str(found.version)


def _download_bundle(version: str) -> ModelBundle:
    """A registered version's bundle, read from its downloaded files."""
    root = mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}/{version}")
    return ModelBundle.load(Path(root) / "artifacts" / BUNDLE_ARTIFACT)
