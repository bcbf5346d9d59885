"""One typed settings object, built at the entry point from defaults, environment and options."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# Both libraries phone home at import; the machines are offline and a hung look-up costs seconds.
OFFLINE_ENVIRONMENT = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
}

REPO_ROOT = Path(__file__).resolve().parent.parent
"""Where the packages are (the repository in a checkout): code is found here, nothing is kept."""

HOME_ENV = "VAFA_HOME"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
STORE_URL_ENV = "VAFA_STORE_URL"


def quiet_telemetry() -> None:
    """Switch off telemetry before MLflow or BentoML is imported, unless the user chose."""
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite database file (absolute, so any process finds it)."""
    return f"sqlite:///{path.resolve()}"


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know beyond its own arguments.

    Attributes:
        churn_window_days: churn = no purchase in this many days after the date.
        horizon_days: horizon of predicted spend and CLV.
        margin_rate: gross margin per unit of revenue where the data has no margin column.
        annual_discount_rate: discount rate applied to future margin in CLV (0 = none).
        tracking_uri: MLflow tracking URI (`MLFLOW_TRACKING_URI`); by default the SQLite
            store `mlflow/mlflow.db` in the home folder.
        store_url: SQLAlchemy URL of the scores store the batch writes and `/lookup` reads
            (`VAFA_STORE_URL`); by default the SQLite file `store/scores.db` in the home folder.
        seed: seed for everything random.
    """

    churn_window_days: int = 90
    horizon_days: int = 365
    margin_rate: float = 0.3
    annual_discount_rate: float = 0.0
    tracking_uri: str = ""
    store_url: str = ""
    seed: int = 42

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> Settings:
        """Defaults, then the environment, then explicit options (None = not given).

        The home folder holding the default stores is `VAFA_HOME` when set, else the working
        directory: the same command run in two folders uses two registries unless told.
        """
        env = os.environ if env is None else env
        defaults = cls.for_home(Path(env.get(HOME_ENV) or ".").expanduser())
        settings = replace(
            defaults,
            tracking_uri=env.get(TRACKING_URI_ENV) or defaults.tracking_uri,
            store_url=env.get(STORE_URL_ENV) or defaults.store_url,
        )
        given = {k: v for k, v in options.items() if v is not None}
        return replace(settings, **given)

    @classmethod
    def for_home(cls, home: Path) -> Settings:
        """The defaults, with the registry and the scores store kept in one folder.

        `HOME/mlflow/mlflow.db` and `HOME/store/scores.db` (SQLite), whatever the environment
        says: what `VAFA_HOME` selects, and where `vafa demo` keeps its own.
        """
        return cls(
            tracking_uri=sqlite_url(home / "mlflow" / "mlflow.db"),
            store_url=sqlite_url(home / "store" / "scores.db"),
        )
