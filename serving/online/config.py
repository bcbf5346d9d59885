"""The online service's settings: read from the environment once, at start-up, or not started.

The registry and the scores store come in as variables (`vafa serve` resolves and sets them):
serving never reads the project's settings itself.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

TOKEN_ENV, TOKEN_FILE_ENV = "VAFA_API_TOKEN", "VAFA_API_TOKEN_FILE"
INSECURE_ENV = "VAFA_ALLOW_INSECURE"
MAX_BODY_ENV, POLL_ENV = "VAFA_MAX_REQUEST_BYTES", "VAFA_MODEL_POLL_SECONDS"
BATCH_WAIT_ENV = "VAFA_BATCH_WAIT_MS"
TRACKING_URI_ENV, STORE_URL_ENV = "MLFLOW_TRACKING_URI", "VAFA_STORE_URL"
DEFAULT_MAX_BODY = 16 * 1024 * 1024
DEFAULT_POLL_SECONDS = 30.0
DEFAULT_BATCH_WAIT_MS = 50.0


class ConfigError(ValueError):
    """The service's environment is inconsistent; it must not start."""


@dataclass(frozen=True)
class ServiceConfig:
    """What the service reads from the environment, once, at start-up.

    Attributes:
        token: the bearer token every non-health request needs; None = no authentication.
        insecure: without a token, answer other machines too (else only loopback clients).
        max_request_bytes: larger request bodies get 413.
        poll_seconds: how often the champion alias is checked; 0 = only on `/reload`.
        batch_wait_seconds: the longest a request waits for others to be scored with it.
        tracking_uri: the MLflow registry holding the champion.
        store_url: the scores store `/lookup` reads.
    """

    token: str | None
    tracking_uri: str
    store_url: str
    insecure: bool = False
    max_request_bytes: int = DEFAULT_MAX_BODY
    poll_seconds: float = DEFAULT_POLL_SECONDS
    batch_wait_seconds: float = DEFAULT_BATCH_WAIT_MS / 1000

    @classmethod
    def from_env(cls, env: MutableMapping[str, str] | None = None) -> ServiceConfig:
        """The service's variables, the registry's and the scores store's included.

        Args:
            env: the environment to read; `os.environ` when None.

        Raises:
            ConfigError: `MLFLOW_TRACKING_URI` or `VAFA_STORE_URL` not set, both token
                variables set, an unreadable or empty token, a bad number.
        """
        env = os.environ if env is None else env
        missing = [name for name in (TRACKING_URI_ENV, STORE_URL_ENV) if not env.get(name)]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} not set: `vafa serve` sets "
                f"{'it' if len(missing) == 1 else 'them'} from the settings; a server started "
                "otherwise needs them in its environment"
            )
        return cls(
            token=_token(env),
            insecure=env.get(INSECURE_ENV, "").lower() in ("1", "true", "yes"),
            tracking_uri=env[TRACKING_URI_ENV],
            store_url=env[STORE_URL_ENV],
            max_request_bytes=int(_number(env, MAX_BODY_ENV, DEFAULT_MAX_BODY, minimum=1024)),
            poll_seconds=_number(env, POLL_ENV, DEFAULT_POLL_SECONDS, minimum=0.0),
            batch_wait_seconds=_number(env, BATCH_WAIT_ENV, DEFAULT_BATCH_WAIT_MS, minimum=0.0)
            / 1000,
        )


def _token(env: MutableMapping[str, str]) -> str | None:
    value, path = env.get(TOKEN_ENV), env.get(TOKEN_FILE_ENV)
    if value and path:
        raise ConfigError(f"set {TOKEN_ENV} or {TOKEN_FILE_ENV}, not both")
    if path:
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{TOKEN_FILE_ENV}: cannot read {path}: {exc.strerror}") from exc
        if not value:
            raise ConfigError(f"{TOKEN_FILE_ENV}: {path} is empty")
    return value or None


def _number(env: MutableMapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        number = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not number >= minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}")
    return number


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (`localhost`, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to listen beyond this machine without a token unless told it may run insecure.

    Raises:
        ConfigError: a non-loopback host, no token, and no explicit consent.
    """
    if token is None and not insecure and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without a token: set {TOKEN_ENV} or "
            f"{TOKEN_FILE_ENV}, bind to 127.0.0.1, or pass --insecure"
        )
