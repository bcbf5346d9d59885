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
AUTH_FAILURES_ENV = "VAFA_AUTH_FAILURES"
RELOAD_WAIT_ENV, HEADER_TIMEOUT_ENV = "VAFA_RELOAD_WAIT_SECONDS", "VAFA_HEADER_TIMEOUT_SECONDS"
TRACKING_URI_ENV, STORE_URL_ENV = "MLFLOW_TRACKING_URI", "VAFA_STORE_URL"
# MLflow's own HTTP settings: its defaults kept the service from answering anything for
# minutes while the registry was down (docs/online.md, "Champion reload").
REGISTRY_TIMEOUT_ENV = "MLFLOW_HTTP_REQUEST_TIMEOUT"
REGISTRY_RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
REGISTRY_BACKOFF_ENV = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
DEFAULT_MAX_BODY = 16 * 1024 * 1024
DEFAULT_POLL_SECONDS = 30.0
DEFAULT_BATCH_WAIT_MS = 50.0
DEFAULT_AUTH_FAILURES = 10
DEFAULT_RELOAD_WAIT_SECONDS = 20.0
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
DEFAULT_REGISTRY_TIMEOUT_SECONDS = 10
DEFAULT_REGISTRY_RETRIES = 2
DEFAULT_REGISTRY_BACKOFF = 1
MIN_TOKEN_LENGTH = 16


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
        auth_failures: wrong tokens a client may send before it must wait (429).
        reload_wait_seconds: the longest `/reload` waits for the registry before it answers.
        header_timeout_seconds: a connection that sends no complete request headers within
            this long of opening (or of its last answer) is closed.
        registry_timeout_seconds: the longest one registry (MLflow HTTP) request may take.
        registry_retries: how often a failed registry request is retried.
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
    auth_failures: int = DEFAULT_AUTH_FAILURES
    reload_wait_seconds: float = DEFAULT_RELOAD_WAIT_SECONDS
    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    registry_timeout_seconds: int = DEFAULT_REGISTRY_TIMEOUT_SECONDS
    registry_retries: int = DEFAULT_REGISTRY_RETRIES

    @classmethod
    def from_env(cls, env: MutableMapping[str, str] | None = None) -> ServiceConfig:
        """The service's variables, the registry's and the scores store's included.

        Args:
            env: the environment to read; `os.environ` when None.

        Raises:
            ConfigError: `MLFLOW_TRACKING_URI` or `VAFA_STORE_URL` not set, both token
                variables set, an unreadable, empty or short token, a bad number.
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
            auth_failures=int(_number(env, AUTH_FAILURES_ENV, DEFAULT_AUTH_FAILURES, minimum=1)),
            reload_wait_seconds=_number(
                env, RELOAD_WAIT_ENV, DEFAULT_RELOAD_WAIT_SECONDS, minimum=0.1
            ),
            header_timeout_seconds=_number(
                env, HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT_SECONDS, minimum=0.1
            ),
            registry_timeout_seconds=_whole(
                env, REGISTRY_TIMEOUT_ENV, DEFAULT_REGISTRY_TIMEOUT_SECONDS, minimum=1
            ),
            registry_retries=_whole(env, REGISTRY_RETRIES_ENV, DEFAULT_REGISTRY_RETRIES, minimum=0),
        )

    def registry_environment(self, env: MutableMapping[str, str] | None = None) -> dict[str, str]:
        """MLflow's HTTP settings for the registry calls: short timeouts, few retries.

        The service sets them in its process before its first registry call, so a registry
        that is down costs seconds, not minutes. A back-off factor the environment sets is kept.
        """
        env = os.environ if env is None else env
        return {
            REGISTRY_TIMEOUT_ENV: str(self.registry_timeout_seconds),
            REGISTRY_RETRIES_ENV: str(self.registry_retries),
            REGISTRY_BACKOFF_ENV: env.get(REGISTRY_BACKOFF_ENV) or str(DEFAULT_REGISTRY_BACKOFF),
        }


def _token(env: MutableMapping[str, str]) -> str | None:
    """The token, without surrounding whitespace, from the variable or the file it names.

    Stray whitespace (a trailing newline, a pasted space) is no part of a token, whichever way
    it comes; a short token is refused, since it would let the service answer other machines.
    """
    value, path = env.get(TOKEN_ENV), env.get(TOKEN_FILE_ENV)
    if value and path:
        raise ConfigError(f"set {TOKEN_ENV} or {TOKEN_FILE_ENV}, not both")
    source = TOKEN_ENV
    if path:
        source = f"{TOKEN_FILE_ENV} ({path})"
        try:
            value = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{TOKEN_FILE_ENV}: cannot read {path}: {exc.strerror}") from exc
        if not value.strip():
            raise ConfigError(f"{TOKEN_FILE_ENV}: {path} is empty")
    if not value:
        return None
    token = value.strip()
    if not token:
        raise ConfigError(f"{TOKEN_ENV} holds only whitespace")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{source}: the token has {len(token)} characters, fewer than {MIN_TOKEN_LENGTH}: "
            "use a long random one (e.g. `openssl rand -hex 32`)"
        )
    return token


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


def _whole(env: MutableMapping[str, str], name: str, default: int, minimum: int) -> int:
    number = _number(env, name, default, minimum)
    if number != int(number):
        raise ConfigError(f"{name} must be a whole number, got {env.get(name)!r}")
    return int(number)


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
