"""One typed settings object, built at the entry point from defaults, environment and options."""

from __future__ import annotations

import os
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


def quiet_telemetry() -> None:
    """Switch off telemetry before MLflow or BentoML is imported, unless the user chose."""
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know beyond its own arguments.

    Attributes:
        churn_window_days: churn = no purchase in this many days after the date.
        horizon_days: horizon of predicted spend and CLV.
        margin_rate: gross margin per unit of revenue where the data has no margin column.
        annual_discount_rate: discount rate applied to future margin in CLV (0 = none).
        tracking_uri: MLflow tracking URI; the embedded store under `mlflow/` by default.
        store_url: SQLAlchemy URL of the scores store the batch writes and `/lookup` reads
            (`VAFA_STORE_URL`); SQLite under `store/` by default.
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
    def from_env(cls, env: dict[str, str] | None = None, **options: Any) -> Settings:
        """Defaults, then the environment, then explicit options (None = not given)."""
        env = dict(os.environ) if env is None else env
        store = REPO_ROOT / "mlflow"
        settings = cls(
            tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store / 'mlflow.db'}",
            store_url=env.get("VAFA_STORE_URL") or f"sqlite:///{REPO_ROOT / 'store' / 'scores.db'}",
        )
        given = {k: v for k, v in options.items() if v is not None}
        return replace(settings, **given)
