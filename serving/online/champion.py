"""The served champion: loaded beside the old one, checked, then swapped in whole.

A request takes one reference and keeps it, so it sees one model version from start to end
(docs/online.md, "Champion reload"). The registry is only ever asked from a background
thread, one check at a time: a registry that is slow or down never holds a request.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from serving.online.config import DEFAULT_POLL_SECONDS
from serving.online.requests import clock_as_of, score_customers
from serving.scoring.scorer import Scorer

log = logging.getLogger("vafa.service")

_CREDENTIALS = re.compile(r"(://[^:/@\s]+):[^@\s]+@")


@dataclass(frozen=True)
class Champion:
    """A loaded model version: what one request uses from start to end."""

    scorer: Scorer
    version: str
    loaded_at: dt.datetime


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def describe(exc: BaseException) -> str:
    """An error in one line for logs and status: type and first line, passwords masked."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = _CREDENTIALS.sub(r"\1:***@", text)[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def resolve_alias(alias: str) -> str:
    """The version the alias points at now (one cheap registry call)."""
    from mlflow import MlflowClient
    from training.registry import MODEL_NAME

    return str(MlflowClient().get_model_version_by_alias(MODEL_NAME, alias).version)


def load_champion(alias: str) -> Champion:
    """Load the bundle under the alias into a one-thread scorer and score an example with it.

    The example makes a model that cannot score fail here, before it replaces anything.
    """
    from serving.online.schema import example_customers
    from training.registry import load_bundle

    bundle, version = load_bundle(alias)
    scorer = Scorer(bundle, version, num_threads=1)
    scorer.prepare()
    champion = Champion(scorer, version, _utcnow())
    score_customers(champion, example_customers(), clock_as_of())
    return champion


class ChampionHolder:
    """The served champion; replaced whole, never changed in place.

    `refresh` is the only writer (one at a time); readers take `current` once per request.
    A registry that cannot be reached or a model that fails to load leaves the current one
    serving and is recorded in `error` and the log. `check` runs `refresh` in a background
    thread, joining the check already running if there is one; `start` loads the champion
    that way at once, then follows the alias.
    """

    def __init__(
        self,
        alias: str = "champion",
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        resolve: Callable[[str], str] = resolve_alias,
        load: Callable[[str], Champion] = load_champion,
    ) -> None:
        self.alias = alias
        self.poll_seconds = poll_seconds
        self._resolve, self._load = resolve, load
        self._current: Champion | None = None
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._check_lock = threading.Lock()
        self._check: Future[str | None] | None = None
        self.last_check: dt.datetime | None = None
        self.error: str | None = None
        self.swaps = 0
        self.failures = 0

    @property
    def current(self) -> Champion | None:
        """The champion serving now (None before the first successful load)."""
        return self._current

    def refresh(self) -> bool:
        """Load the alias's version if it moved; True when the served version changed."""
        with self._refresh_lock:
            self.last_check = _utcnow()
            current = self._current
            try:
                version = self._resolve(self.alias)
            except Exception as exc:
                return self._failed(f"registry: {describe(exc)}")
            if current is not None and current.version == version:
                self.error = None
                return False
            try:
                loaded = self._load(self.alias)
            except Exception as exc:
                return self._failed(f"model version {version} failed to load: {describe(exc)}")
            self._current = loaded  # one reference assignment: the swap is atomic
            self.error = None
            self.swaps += 1
            settle_memory()
            log.info(
                "serving model version %s (was %s)",
                loaded.version,
                "none" if current is None else current.version,
            )
            return True

    def check(self) -> Future[str | None]:
        """`refresh` in a background thread, or the one already running; its error, if any.

        The future's result is the error the check ended with (None: the alias was read and
        the champion is its version). Waiting on it is the caller's choice: the check goes on
        whether anyone waits or not.
        """
        with self._check_lock:
            if self._check is not None and not self._check.done():
                return self._check
            running: Future[str | None] = Future()
            self._check = running

        def run() -> None:
            try:
                self.refresh()
                running.set_result(self.error)
            except BaseException as exc:  # never leave a waiter hanging
                running.set_exception(exc)

        threading.Thread(target=run, name="vafa-champion-check", daemon=True).start()
        return running

    @property
    def checking(self) -> bool:
        """A registry check is running now."""
        check = self._check
        return check is not None and not check.done()

    def _failed(self, message: str) -> bool:
        self.error = message
        self.failures += 1
        current = self._current
        kept = "no model loaded" if current is None else f"keeping version {current.version}"
        log.warning("%s; %s", message, kept)
        return False

    def start(self) -> None:
        """Load the champion in the background now, then check the alias every `poll_seconds`.

        Returns at once: the service answers (not ready) while the registry is asked.
        `poll_seconds` 0 checks only at start and on `check`.
        """
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll, name="vafa-champion", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        self._wait_for(self.check())
        while self.poll_seconds > 0 and not self._stop.wait(self.poll_seconds):
            self._wait_for(self.check())

    def _wait_for(self, check: Future[str | None]) -> None:
        while not self._stop.is_set():
            try:
                check.result(timeout=1.0)
                return
            except TimeoutError:
                continue
            except Exception:
                log.exception("checking the champion failed")
                return

    def stop(self) -> None:
        """End the polling thread."""
        self._stop.set()

    def metrics(self) -> str:
        """Prometheus text: the version served, swaps and failed looks at the registry."""
        current = self._current
        served = "" if current is None else f'{{version="{current.version}"}}'
        lines = [
            "# HELP vafa_model_loaded 1 when a model serves, labelled with its version.",
            "# TYPE vafa_model_loaded gauge",
            f"vafa_model_loaded{served} {0 if current is None else 1}",
            "# HELP vafa_model_swaps_total Model versions loaded since start.",
            "# TYPE vafa_model_swaps_total counter",
            f"vafa_model_swaps_total {self.swaps}",
            "# HELP vafa_registry_failures_total Failed registry checks or model loads.",
            "# TYPE vafa_registry_failures_total counter",
            f"vafa_registry_failures_total {self.failures}",
        ]
        return "\n".join(lines) + "\n"


def settle_memory() -> None:
    """Collect the old model's garbage, then exempt what lives on from the collector.

    Full collections walk every object alive, the libraries and the model included: their
    pauses were the tail of the latencies (docs/online.md). Frozen objects are never walked;
    unfreezing first lets a replaced model be collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
