"""The online service's machinery without BentoML: settings, the champion, batching, the guard.

`serving/online/service.py` is the thin BentoML layer over these pieces:

- `ServiceConfig`: token, limits and intervals from the environment, read once at start-up.
- `ChampionHolder`: the champion's `Scorer`, replaced whole when the registry alias moves; a
  request takes one reference and keeps it, so it sees one version from start to end.
- `ScoringQueue`: one thread builds features and scores; requests that arrive while it works
  go together in its next call. Most of a call's cost is fixed (one customer about 3 ms, eight
  about 5 ms in `benchmarks/single.py`), so batching is where the throughput is. Under steady
  load it waits a few milliseconds for as many requests as its last cycle brought; unlike
  BentoML's adaptive batching it never rejects a request for waiting.
- `Guard`: bearer-token check (constant time) and the body-size limit, in front of everything.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import hmac
import json
import logging
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.build import feature_columns
from features.rfm import Columns
from features.schema import CUSTOMERS, EVENTS, TRANSACTIONS, TableSpec
from serving.online.schema import CustomerHistory, IgnoredRows, ScoreResponse, Unscored
from serving.scoring.scorer import Scorer
from serving.store import score_records

log = logging.getLogger("vafa.service")

TOKEN_ENV, TOKEN_FILE_ENV = "VAFA_API_TOKEN", "VAFA_API_TOKEN_FILE"
INSECURE_ENV = "VAFA_ALLOW_INSECURE"
MAX_BODY_ENV, POLL_ENV = "VAFA_MAX_REQUEST_BYTES", "VAFA_MODEL_POLL_SECONDS"
BATCH_WAIT_ENV = "VAFA_BATCH_WAIT_MS"
DEFAULT_MAX_BODY = 16 * 1024 * 1024
DEFAULT_POLL_SECONDS = 30.0
DEFAULT_BATCH_WAIT_MS = 50.0
# Health, liveness, readiness and metrics stay open for probes and scrapers (contract).
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
NO_TRANSACTION = "no transaction before as_of"
BATCH_CUSTOMERS = 2000  # a queue call takes waiting requests up to about this many customers
# While it waits for a batch, the scoring thread gives up on requests that do not come within
# this. Requests reach the queue one event-loop parse apart: 1 ms on a quiet 2-core machine,
# 2-2.5 ms when its host is busy, plus any slice the OS gives the client. With 2 ms, calls at
# concurrency 8 fell to 4-5 requests on a busy host and the p50 rose from 23 to 39 ms.
ARRIVAL_GAP_SECONDS = 0.005

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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
        """Settings plus the service's own variables.

        Raises:
            ConfigError: both token variables set, an unreadable or empty token, a bad number.
        """
        from vafa.settings import Settings

        env = os.environ if env is None else env
        settings = Settings.from_env(dict(env))
        return cls(
            token=_token(env),
            insecure=env.get(INSECURE_ENV, "").lower() in ("1", "true", "yes"),
            tracking_uri=settings.tracking_uri,
            store_url=settings.store_url,
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


# --- the champion ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Champion:
    """A loaded model version: what one request uses from start to end."""

    scorer: Scorer
    version: str
    loaded_at: dt.datetime


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


_CREDENTIALS = re.compile(r"(://[^:/@\s]+):[^@\s]+@")


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
    score_customers(champion, example_customers(), default_as_of())
    return champion


class ChampionHolder:
    """The served champion; replaced whole, never changed in place.

    `refresh` is the only writer (one at a time); readers take `current` once per request.
    A registry that cannot be reached or a model that fails to load leaves the current one
    serving and is recorded in `status` and the log.
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

    def _failed(self, message: str) -> bool:
        self.error = message
        self.failures += 1
        current = self._current
        kept = "no model loaded" if current is None else f"keeping version {current.version}"
        log.warning("%s; %s", message, kept)
        return False

    def start(self) -> None:
        """Check the alias every `poll_seconds` in a background thread (0: never)."""
        if self.poll_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll, name="vafa-champion", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()

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

    Full collections walk every object alive: the libraries and the model make that a pause
    of tens of milliseconds, the tail of the latencies (measured: in-process p99 248 -> 87 ms).
    Frozen objects are never walked; unfreezing first lets a replaced model be collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


# --- requests to feature tables ----------------------------------------------------------------


def default_as_of(now: dt.datetime | None = None) -> pd.Timestamp:
    """Tomorrow, 00:00 UTC: everything up to now counts, as `vafa score` counts the last day."""
    today = pd.Timestamp(now or _utcnow()).normalize()
    return (today + pd.Timedelta(days=1)).as_unit("us")


def _columns(spec: TableSpec, rows: list[Any]) -> list[str]:
    """The table's columns as a file of these rows would have them: any row giving a field."""
    given: set[str] = set().union(*(row.__pydantic_fields_set__ for row in rows))
    return [c.name for c in spec.columns if c.name != "customer_id" and c.name in given]


_MICROSECONDS = pa.timestamp("us")


def _table(spec: TableSpec, ids: list[str], rows: list[Any], columns: list[str]) -> Columns:
    """A table as the loader types it: text as Arrow strings, naive UTC datetime64[us], float64.

    The loader's conversions happen here, a column at a time, rather than per value while
    validating: zoned timestamps become naive UTC (Arrow converts zoned datetimes to UTC), and
    empty text is missing, as in a CSV file.
    """
    data: Columns = {"customer_id": pa.array(ids, pa.string())}
    for name in dict.fromkeys(columns):
        column = spec.column(name)
        values = [getattr(row, name) for row in rows]
        if column.kind == "timestamp":
            data[name] = pa.array(values, _MICROSECONDS).to_numpy(zero_copy_only=False)
        elif column.kind == "float":
            data[name] = np.array(values, dtype=np.float64)
        else:
            text = pa.array(values, pa.string())
            data[name] = text if column.required else pc.if_else(pc.equal(text, ""), None, text)
    return data


@dataclass(frozen=True)
class RequestTables:
    """A request's contract tables as dicts of arrays: what `feature_columns` reads online."""

    transactions: Columns
    events: Columns | None = None
    customers: Columns | None = None


def request_tables(customers: list[CustomerHistory], keys: list[str]) -> RequestTables:
    """The contract tables of customers, each under its key (ids stay out of the features).

    A table is present when any customer sends it (`events: []` is an events table without
    rows for that customer; leaving `events` out is no events table), and a column when any
    row gives it, as it would be in a data folder holding these rows. Rows stay in the order
    of `customers`.
    """
    tx_ids, tx_rows, ev_ids, ev_rows, profile_ids, profiles = [], [], [], [], [], []
    has_events = has_profiles = False
    for key, customer in zip(keys, customers, strict=True):
        tx_ids += [key] * len(customer.transactions)
        tx_rows += customer.transactions
        if "events" in customer.model_fields_set:
            has_events = True
            events = customer.events or []
            ev_ids += [key] * len(events)
            ev_rows += events
        if "profile" in customer.model_fields_set:
            has_profiles = True
            if customer.profile is not None:
                profile_ids.append(key)
                profiles.append(customer.profile)
    return RequestTables(
        transactions=_table(
            TRANSACTIONS, tx_ids, tx_rows, ["ts", "amount", *_columns(TRANSACTIONS, tx_rows)]
        ),
        events=_table(EVENTS, ev_ids, ev_rows, ["ts", "event", *_columns(EVENTS, ev_rows)])
        if has_events
        else None,
        customers=_table(CUSTOMERS, profile_ids, profiles, _columns(CUSTOMERS, profiles))
        if has_profiles
        else None,
    )


def _shape(customers: list[CustomerHistory]) -> tuple[object, ...]:
    """Which tables and columns a request sends: only requests alike are scored together."""
    tx = [r for c in customers for r in c.transactions]
    ev = [r for c in customers if "events" in c.model_fields_set for r in c.events or []]
    profiles = [c.profile for c in customers if c.profile is not None]
    return (
        tuple(_columns(TRANSACTIONS, tx)),
        any("events" in c.model_fields_set for c in customers),
        tuple(_columns(EVENTS, ev)),
        any("profile" in c.model_fields_set for c in customers),
        tuple(_columns(CUSTOMERS, profiles)),
    )


def later_rows(table: Columns | None, as_of: pd.Timestamp, sizes: list[int]) -> list[int]:
    """Per request, its rows of `table` dated at or after `as_of`; `sizes`: its rows in order."""
    if table is None:
        return [0] * len(sizes)
    later = np.concatenate(([0], np.cumsum(table["ts"] >= as_of.to_datetime64())))
    ends = np.cumsum(sizes)
    return (later[ends] - later[ends - sizes]).tolist()


def score_customers(
    champion: Champion, customers: list[CustomerHistory], as_of: pd.Timestamp
) -> ScoreResponse:
    """Features with the batch's code, scores with the batch's scorer, for one request."""
    return score_requests(champion, [customers], as_of)[0]


def score_requests(
    champion: Champion, requests: list[list[CustomerHistory]], as_of: pd.Timestamp
) -> list[ScoreResponse]:
    """Several requests alike (same as_of, tables and columns) in one features and score call.

    Customers are keyed by request and position, so two requests may send the same id with
    different histories, and no customer id reaches the feature code.
    """
    keys = [[f"{r:05d}:{i:05d}" for i in range(len(c))] for r, c in enumerate(requests)]
    tables = request_tables(
        [c for customers in requests for c in customers], [k for ks in keys for k in ks]
    )
    later_transactions = later_rows(
        tables.transactions, as_of, [sum(len(c.transactions) for c in r) for r in requests]
    )
    later_events = later_rows(
        tables.events, as_of, [sum(len(c.events or []) for c in r) for r in requests]
    )
    scorer = champion.scorer
    # The batch's feature and scoring code on a dict of columns: for a few customers a
    # DataFrame's cost per column would be most of the request.
    features = feature_columns(tables, as_of, event_types=scorer.bundle.spec.event_types or None)
    n = len(features["customer_id"])
    rows: dict[str, dict[str, Any]] = {}
    if n:
        # The batch's defaults, reasons included, so a /score row and its /lookup row agree,
        # in the scores store's encoding: ISO dates, NaN as null.
        scored = scorer.score_columns(features, n, as_of)
        rows = {record["customer_id"]: record for record in score_records(scored)}
    responses = []
    for customers, request_keys, transactions, events in zip(
        requests, keys, later_transactions, later_events, strict=True
    ):
        scores, unscored = [], []
        for customer, key in zip(customers, request_keys, strict=True):
            if key in rows:
                scores.append({**rows[key], "customer_id": customer.customer_id})
            else:
                unscored.append(Unscored(customer_id=customer.customer_id, reason=NO_TRANSACTION))
        responses.append(
            ScoreResponse(
                model_version=champion.version,
                as_of=as_of.to_pydatetime(),
                scores=scores,
                unscored=unscored,
                ignored_rows=IgnoredRows(transactions=transactions, events=events),
            )
        )
    return responses


# --- the scoring thread ------------------------------------------------------------------------


class NotReadyError(RuntimeError):
    """No model is loaded yet."""


@dataclass
class _Job:
    customers: list[CustomerHistory]
    as_of: pd.Timestamp
    future: Future[ScoreResponse] = field(default_factory=Future)


ScoreRequests = Callable[[Champion, list[list[CustomerHistory]], pd.Timestamp], list[ScoreResponse]]


class ScoringQueue:
    """One thread scores; requests arriving while it works are scored together next.

    Alone, that alternates under steady load: the thread takes the first request the event
    loop hands over and scores it alone (the fixed cost of a call, about 3 ms) while the
    others are still being parsed, then scores those together, and so on. Three things keep
    the requests of one round together, each waiting at most `max_wait` seconds:

    - The event loop hands requests over once per turn of the loop, all those its turn has
      parsed: a burst read at once (a round of clients, new connections) is one hand-over.
    - A call waits for the requests the loop's current turn has parsed and not yet handed
      over: when a burst spans two turns, its first request does not go alone.
    - A call waits for as many requests as the last cycle brought (those the last call
      scored and those that came while it worked), at most `arrival_gap` between two.

    A lone client pays nothing: after a cycle of one request nothing waits. Measured with 8
    clients on 2 cores: calls of 8 instead of alternating 1 and 7, about a third less server
    CPU per request, and the first round of new connections scored together (README,
    Throughput). `metrics` counts calls and requests, so the mean batch is visible in
    production.
    """

    def __init__(
        self,
        holder: ChampionHolder,
        batch_customers: int = BATCH_CUSTOMERS,
        max_wait: float = DEFAULT_BATCH_WAIT_MS / 1000,
        arrival_gap: float = ARRIVAL_GAP_SECONDS,
        score: ScoreRequests | None = None,
    ) -> None:
        self._holder = holder
        self._batch_customers = batch_customers
        self._max_wait = max_wait
        self._arrival_gap = min(arrival_gap, max_wait)
        self._score_requests = score or score_requests
        self._expected = 1  # requests of the last cycle: what steady load brings next
        self.calls = 0  # scoring calls made, and the requests they answered
        self.requests = 0
        self._parsed: list[_Job] = []  # this turn of the event loop's requests
        self._jobs: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self._waiting: deque[_Job] = deque()  # handed over, not yet scored (the thread's own)
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="vafa-scoring", daemon=True)
        self._thread.start()

    async def score(
        self, customers: list[CustomerHistory], as_of: pd.Timestamp, timeout: float = 60.0
    ) -> ScoreResponse:
        """Queue one request and wait for its scores."""
        job = _Job(customers, as_of)
        self._parsed.append(job)
        if len(self._parsed) == 1:
            # Runs after the requests this turn of the loop has ready, so they go together.
            asyncio.get_running_loop().call_soon(self._hand_over)
        return await asyncio.wait_for(asyncio.wrap_future(job.future), timeout)

    def _hand_over(self) -> None:
        jobs, self._parsed = self._parsed, []
        self._jobs.put(jobs)

    def close(self) -> None:
        """Let the thread finish after the jobs already queued."""
        self._jobs.put(None)

    def metrics(self) -> str:
        """Prometheus text: scoring calls and the requests they answered (their ratio: batching)."""
        return (
            "# HELP vafa_scoring_calls_total Calls of the scoring thread since start.\n"
            "# TYPE vafa_scoring_calls_total counter\n"
            f"vafa_scoring_calls_total {self.calls}\n"
            "# HELP vafa_scoring_requests_total /score requests those calls answered.\n"
            "# TYPE vafa_scoring_requests_total counter\n"
            f"vafa_scoring_requests_total {self.requests}\n"
        )

    def _run(self) -> None:
        while self._waiting or self._fetch(None):
            batch = self._collect()
            answers = self._score(batch)
            while self._fetch(0):  # those who came while the call worked
                pass
            # The clients in play: those just scored and those who came meanwhile. Counted
            # before the answers go out: a request that follows an answer is its client again.
            self._expected = len(batch) + len(self._waiting)
            self.calls += 1
            self.requests += len(batch)
            for job, answer in answers:
                if isinstance(answer, Exception):
                    job.future.set_exception(answer)
                else:
                    job.future.set_result(answer)

    def _fetch(self, timeout: float | None) -> bool:
        """Move the next hand-over into `_waiting`; False if none came or the queue closes.

        `timeout`: None waits until one comes, 0 takes only what is there.
        """
        if self._closing:
            return False
        try:
            jobs = self._jobs.get(timeout=timeout) if timeout != 0 else self._jobs.get_nowait()
        except queue.Empty:
            return False
        if jobs is None:
            self._closing = True
            return False
        self._waiting.extend(jobs)
        return True

    def _collect(self) -> list[_Job]:
        """The jobs waiting, then those coming soon while fewer than expected, to a call's size."""
        batch: list[_Job] = []
        size = 0
        deadline = time.monotonic() + self._max_wait
        while size < self._batch_customers:
            if not self._waiting and not self._fetch(0):
                # Wait while fewer than expected came, or while the event loop's current turn
                # holds requests it has parsed and will hand over when the turn ends.
                wait = min(self._arrival_gap, deadline - time.monotonic())
                if wait <= 0 or (len(batch) >= self._expected and not self._parsed):
                    break
                if not self._fetch(wait) and not self._parsed:
                    break
                continue
            job = self._waiting.popleft()
            batch.append(job)
            size += len(job.customers)
        return batch

    def _score(self, batch: list[_Job]) -> list[tuple[_Job, ScoreResponse | Exception]]:
        """Each job's answer or error."""
        champion = self._holder.current  # one version for the whole call
        if champion is None:
            return [(job, NotReadyError("no model loaded yet")) for job in batch]
        groups: dict[tuple[object, ...], list[_Job]] = {}
        for job in batch:
            groups.setdefault((job.as_of, *_shape(job.customers)), []).append(job)
        return [answer for jobs in groups.values() for answer in self._score_group(champion, jobs)]

    def _score_group(
        self, champion: Champion, jobs: list[_Job]
    ) -> list[tuple[_Job, ScoreResponse | Exception]]:
        """Jobs of one shape in one call; if that fails, each alone: one must not fail others."""
        try:
            results = self._score_requests(champion, [j.customers for j in jobs], jobs[0].as_of)
        except Exception:
            if len(jobs) > 1:
                return [answer for job in jobs for answer in self._score_group(champion, [job])]
            log.exception("scoring failed")
            return [(jobs[0], RuntimeError("scoring failed"))]
        return list(zip(jobs, results, strict=True))


# --- the guard ---------------------------------------------------------------------------------


class Guard:
    """ASGI middleware: bearer token on all but health and metrics, and the body-size limit.

    The token is compared in constant time; neither it nor any body is logged. Without a
    token, only clients on this machine are answered unless the service was told it may run
    insecure: that holds however the server was started (`vafa serve` checks the address
    before binding; a Bento container's `bentoml serve` binds 0.0.0.0).
    """

    def __init__(self, app: ASGIApp, config: ServiceConfig | None = None) -> None:
        self.app = app
        config = config or ServiceConfig.from_env()
        self.token = None if config.token is None else config.token.encode()
        self.insecure = config.insecure
        self.max_bytes = config.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse what must be refused before any of the application runs."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        guarded = scope.get("path", "") not in OPEN_PATHS
        client = (scope.get("client") or ("",))[0]
        if guarded and self.token is None and not self.insecure and not is_loopback(client):
            await _reply(
                send,
                403,
                f"no token is configured, so only this machine is served: set {TOKEN_ENV} "
                f"or {TOKEN_FILE_ENV} (or {INSECURE_ENV}=1)",
            )
            return
        if self.token is not None and guarded:
            scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                await _reply(
                    send,
                    401,
                    "missing or wrong bearer token (Authorization: Bearer <token>)",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _reply(send, 400, "Content-Length must be a number of bytes")
                return
            if int(length) > self.max_bytes:
                await _reply(send, 413, f"request body over {self.max_bytes} bytes")
                return
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): read up to the limit, then hand the body on.
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reply(send, 413, f"request body over {self.max_bytes} bytes")
                return
            body.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(body), "more_body": False}

        await self.app(scope, replay, send)


async def _reply(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HideRequestData(logging.Filter):
    """Drop the traceback of a rejected request body: pydantic's text would quote its values.

    The client gets the field-by-field errors in the 400 response; the log keeps one line, at
    INFO: a client's mistake is no server error to alert on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record, without a validation traceback."""
        from pydantic import ValidationError

        if record.exc_info and isinstance(record.exc_info[1], ValidationError):
            record.exc_info = None
            record.msg = f"{record.msg} (invalid request body; details sent to the client)"
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True
