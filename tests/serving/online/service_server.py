"""The online service as the CRM meets it: a real `vafa serve` process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from features.schema import Tables
from features.synthetic import generate_tables
from training.registry import configure_tracking, log_training_run
from training.train import TrainOptions, TrainResult, train_models

VAFA = str(Path(sys.executable).with_name("vafa"))
AS_OF = pd.Timestamp("2026-11-01")
# Small and quick: the service is under test here, not the model.
OPTIONS = TrainOptions(trials=1, seed=3, n_snapshots=2, spacing_days=45, num_threads=1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_small(customers: int = 500, seed: int = 11) -> tuple[Tables, TrainResult]:
    tables = generate_tables(customers, seed=seed)
    return tables, train_models(tables, AS_OF, OPTIONS)


def register(result: TrainResult, tracking_uri: str) -> str:
    """Log and register a trained bundle; returns its version (champion if there was none)."""
    configure_tracking(tracking_uri)
    return log_training_run(result, OPTIONS, fingerprint="test", data_dir="test", plots={}).version


@dataclass
class Server:
    """A running service and how to talk to it."""

    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    observed: dict[str, Any] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def wait(self, path: str, status: int = 200, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.tail()}")
            try:
                if httpx.get(self.url + path, timeout=5).status_code == status:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{path} never answered {status}:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """End the server's process group (the server and its workers), gently first."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def start_server(folder: Path, token: str, poll_seconds: float = 1.0, **env: str) -> Server:
    """Start `vafa serve` with its own MLflow registry and scores store under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    token_file = folder / "token"
    token_file.write_text(token + "\n")
    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if k not in ("VAFA_API_TOKEN",)},
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "VAFA_STORE_URL": f"sqlite:///{folder / 'scores.db'}",
        "VAFA_API_TOKEN_FILE": str(token_file),
        "VAFA_MODEL_POLL_SECONDS": str(poll_seconds),
        # The tests send wrong tokens on purpose, all from 127.0.0.1: no back-off here
        # (tests/serving/online/test_guard.py checks it).
        "VAFA_AUTH_FAILURES": "100000",
        **env,
    }
    log = folder / "server.log"
    process = subprocess.Popen(
        [VAFA, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=environment,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Server(f"http://127.0.0.1:{port}", token, process, log, environment)


class SilentRegistry:
    """A loopback port that accepts connections and never answers: a registry that hangs."""

    def __enter__(self) -> str:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
