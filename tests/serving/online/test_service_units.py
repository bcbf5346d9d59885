"""The online service's parts without a server: champion swaps and failures, settings, tables."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError
from typer.testing import CliRunner

from serving.online import (
    Champion,
    ChampionHolder,
    ConfigError,
    NotReadyError,
    ScoreRequests,
    ScoringQueue,
    ServiceConfig,
    check_bind,
    describe,
    is_loopback,
    later_rows,
    request_tables,
)
from serving.online.schema import (
    EXAMPLE_REQUEST,
    CustomerHistory,
    ScoreResponse,
    Timestamp,
    duplicate_ids,
    example_customers,
)

README = Path(__file__).resolve().parents[3] / "README.md"


class FakeRegistry:
    """An alias that moves, a registry that can go away, and versions that may not load."""

    def __init__(self) -> None:
        self.version = "1"
        self.down = False
        self.broken: set[str] = set()
        self.loads = 0

    def resolve(self, alias: str) -> str:
        if self.down:
            raise ConnectionError("http://user:hunter2@mlflow:5000 refused the connection")
        return self.version

    def load(self, alias: str) -> Champion:
        self.loads += 1
        if self.version in self.broken:
            raise ValueError("corrupt model file")
        return Champion(scorer=object(), version=self.version, loaded_at=None)  # type: ignore[arg-type]


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def holder(registry: FakeRegistry) -> ChampionHolder:
    return ChampionHolder(poll_seconds=0, resolve=registry.resolve, load=registry.load)


def test_swaps_when_the_alias_moves_and_only_then(
    holder: ChampionHolder, registry: FakeRegistry
) -> None:
    assert holder.refresh() is True and holder.current is not None
    first = holder.current
    assert holder.refresh() is False and holder.current is first and registry.loads == 1
    registry.version = "2"
    assert holder.refresh() is True
    assert holder.current is not None and holder.current.version == "2"
    assert first.version == "1"  # a request holding the old one keeps a whole, unchanged model


def test_registry_unreachable_keeps_serving_and_says_so(
    holder: ChampionHolder, registry: FakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    holder.refresh()
    registry.down = True
    assert holder.refresh() is False
    assert holder.current is not None and holder.current.version == "1"
    assert holder.error is not None and "registry" in holder.error
    assert "hunter2" not in holder.error and "hunter2" not in caplog.text
    assert "keeping version 1" in caplog.text
    registry.down = False
    holder.refresh()
    assert holder.error is None
    metrics = holder.metrics()
    assert 'vafa_model_loaded{version="1"} 1' in metrics
    assert "vafa_registry_failures_total 1" in metrics and "vafa_model_swaps_total 1" in metrics


def test_a_model_that_fails_to_load_is_not_served(
    holder: ChampionHolder, registry: FakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    holder.refresh()
    registry.version, registry.broken = "2", {"2"}
    assert holder.refresh() is False
    assert holder.current is not None and holder.current.version == "1"
    assert holder.error is not None and "version 2 failed to load" in holder.error


def test_without_any_model_it_waits_instead_of_failing(
    holder: ChampionHolder, registry: FakeRegistry
) -> None:
    registry.down = True
    assert holder.refresh() is False and holder.current is None
    registry.down = False
    assert holder.refresh() is True and holder.current is not None


def test_readers_always_see_a_whole_champion(registry: FakeRegistry) -> None:
    holder = ChampionHolder(poll_seconds=0, resolve=registry.resolve, load=registry.load)
    holder.refresh()
    seen: list[Any] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            current = holder.current
            seen.append(isinstance(current, Champion) and current.version in {"1", "2", "3"})

    reader = threading.Thread(target=read)
    reader.start()
    for version in ("2", "3", "2"):
        registry.version = version
        holder.refresh()
    done.set()
    reader.join()
    assert seen and all(seen)


def test_polling_follows_the_alias(registry: FakeRegistry) -> None:
    holder = ChampionHolder(poll_seconds=0.05, resolve=registry.resolve, load=registry.load)
    holder.refresh()
    holder.start()
    try:
        registry.version = "2"
        for _ in range(100):
            if holder.current is not None and holder.current.version == "2":
                break
            threading.Event().wait(0.05)
        assert holder.current is not None and holder.current.version == "2"
    finally:
        holder.stop()


def test_describe_masks_passwords() -> None:
    text = describe(RuntimeError("cannot reach postgresql://vafa:s3cret@db/scores\nmore"))
    assert text == "RuntimeError: cannot reach postgresql://vafa:***@db/scores"


# --- settings and binding ----------------------------------------------------------------------


def test_token_from_the_variable_or_a_file(tmp_path: Path) -> None:
    assert ServiceConfig.from_env({"VAFA_API_TOKEN": "abc"}).token == "abc"
    assert ServiceConfig.from_env({}).token is None
    token = tmp_path / "token"
    token.write_text("from-file\n")
    assert ServiceConfig.from_env({"VAFA_API_TOKEN_FILE": str(token)}).token == "from-file"


@pytest.mark.parametrize(
    "env,message",
    [
        ({"VAFA_API_TOKEN": "a", "VAFA_API_TOKEN_FILE": "/x"}, "not both"),
        ({"VAFA_API_TOKEN_FILE": "/nonexistent/token"}, "cannot read"),
        ({"VAFA_MODEL_POLL_SECONDS": "soon"}, "must be a number"),
        ({"VAFA_MAX_REQUEST_BYTES": "10"}, "at least"),
        ({"VAFA_BATCH_WAIT_MS": "-1"}, "VAFA_BATCH_WAIT_MS must be at least 0"),
    ],
)
def test_inconsistent_settings_stop_the_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServiceConfig.from_env(env)


def test_the_batch_wait_is_read_in_milliseconds() -> None:
    assert ServiceConfig.from_env({}).batch_wait_seconds == pytest.approx(0.05)
    assert ServiceConfig.from_env({"VAFA_BATCH_WAIT_MS": "0"}).batch_wait_seconds == 0.0
    assert ServiceConfig.from_env({"VAFA_BATCH_WAIT_MS": "20"}).batch_wait_seconds == 0.02


def test_empty_token_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        ServiceConfig.from_env({"VAFA_API_TOKEN_FILE": str(tmp_path / "token")})


@pytest.mark.parametrize(
    "host,loopback",
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
     ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_binding_beyond_loopback_needs_a_token_or_explicit_insecurity() -> None:
    check_bind("127.0.0.1", None, insecure=False)
    check_bind("0.0.0.0", "token", insecure=False)
    check_bind("0.0.0.0", None, insecure=True)
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0"):
        check_bind("0.0.0.0", None, insecure=False)


def test_vafa_serve_refuses_an_open_address_without_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vafa.cli import app

    monkeypatch.delenv("VAFA_API_TOKEN", raising=False)
    monkeypatch.delenv("VAFA_API_TOKEN_FILE", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0" in result.output


@pytest.mark.parametrize("own_config", [False, True], ids=["default", "own-bentoml-config"])
def test_vafa_serve_hands_bentoml_its_workers_and_skips_tracing_nobody_collects(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, own_config: bool
) -> None:
    import json

    from vafa.cli import app

    started: dict[str, Any] = {}

    def execve(path: str, args: list[str], env: dict[str, str]) -> None:
        started.update(args=args, env=env)

    monkeypatch.setattr("os.execve", execve)
    monkeypatch.delenv("BENTOML_CONFIG", raising=False)
    if own_config:
        monkeypatch.setenv("BENTOML_CONFIG", str(tmp_path / "bentoml.yaml"))
    result = CliRunner().invoke(app, ["serve", "--workers", "2", "--port", "3999"])
    assert result.exit_code == 0, result.output
    assert started["args"][-6:-2] == ["--host", "127.0.0.1", "--port", "3999"]
    service = json.loads(started["env"]["BENTOML_CONFIG_OVERRIDES"])["services"]["vafa"]
    assert service["workers"] == 2
    if own_config:
        assert "tracing" not in service  # the operator's config decides
    else:
        assert service["tracing"] == {"excluded_urls": "/score,/lookup"}


# --- requests to tables ------------------------------------------------------------------------


def _customer(**fields: Any) -> CustomerHistory:
    return CustomerHistory.model_validate(
        {"customer_id": "x", "transactions": [{"ts": "2026-01-01", "amount": 5}], **fields}
    )


def test_tables_and_columns_are_present_as_a_data_folder_would_have_them() -> None:
    without = request_tables([_customer()], ["k"])
    assert without.events is None and without.customers is None
    assert list(without.transactions) == ["customer_id", "ts", "amount"]
    empty = request_tables([_customer(events=[], profile=None)], ["k"])
    assert empty.events is not None and len(empty.events["customer_id"]) == 0
    assert empty.customers is not None and len(empty.customers["customer_id"]) == 0
    with_margin = _customer(transactions=[{"ts": "2026-01-01", "amount": 5, "margin": None}])
    tables = request_tables([with_margin, _customer()], ["a", "b"])
    assert "margin" in tables.transactions  # one row gave it, so the table has it
    assert np.isnan(tables.transactions["margin"]).tolist() == [True, True]
    assert tables.transactions["customer_id"].to_pylist() == ["a", "b"]
    assert tables.transactions["ts"].dtype == np.dtype("datetime64[us]")


def test_zoned_timestamps_become_naive_utc() -> None:
    customer = _customer(transactions=[{"ts": "2026-01-01T03:00:00+03:30", "amount": 1}])
    tables = request_tables([customer], ["k"])
    assert tables.transactions["ts"][0] == np.datetime64("2025-12-31T23:30:00")


def test_the_loaders_conversions_happen_in_the_columns() -> None:
    """Zoned times to naive UTC and empty text to missing, as the loader does a file."""
    customer = _customer(
        transactions=[
            {"ts": "2026-01-01T03:00:00+03:30", "amount": 1, "channel": ""},
            {"ts": "2026-01-01T03:00:00Z", "amount": 2, "channel": "  "},
            {"ts": "2026-01-01 03:00", "amount": 3, "channel": "web"},
        ],
        events=[{"ts": "2026-01-02", "event": "email_open", "channel": ""}],
        profile={"signup_ts": "2025-06-01T00:00:00-02:00", "segment": ""},
    )
    tables = request_tables([customer], ["k"])
    assert tables.transactions["ts"].tolist() == [
        dt.datetime(2025, 12, 31, 23, 30),
        dt.datetime(2026, 1, 1, 3),
        dt.datetime(2026, 1, 1, 3),
    ]
    assert tables.transactions["channel"].to_pylist() == [None, None, "web"]
    assert tables.events is not None and tables.events["channel"].to_pylist() == [None]
    assert tables.events["event"].to_pylist() == ["email_open"]
    assert tables.customers is not None
    assert tables.customers["signup_ts"].tolist() == [dt.datetime(2025, 6, 1, 2)]
    assert tables.customers["segment"].to_pylist() == [None]


@pytest.mark.parametrize(
    "ts",
    [1714570000, 1714570000.5, "yesterday", "2026-13-01", "1899-12-31T12:00:00", "2262-01-01Z", ""],
)
def test_only_iso_text_in_range_is_a_row_timestamp(ts: object) -> None:
    with pytest.raises(ValidationError) as raised:
        _customer(transactions=[{"ts": ts, "amount": 1}])
    assert raised.value.errors()[0]["loc"] == ("transactions", 0, "ts")


def test_as_of_is_naive_utc() -> None:
    adapter = TypeAdapter(Timestamp)
    assert adapter.validate_json('"2026-11-01T05:00:00+05:00"') == dt.datetime(2026, 11, 1)
    assert adapter.validate_json('"2026-11-01"') == dt.datetime(2026, 11, 1)
    with pytest.raises(ValidationError):
        adapter.validate_json("1714570000")
    assert adapter.json_schema() == {"type": "string", "format": "date-time"}


def test_rows_at_or_after_as_of_are_counted_per_request() -> None:
    def history(*days: int) -> CustomerHistory:
        return _customer(transactions=[{"ts": f"2026-01-{d:02d}", "amount": 1} for d in days])

    requests = [[history(1, 5, 9), history(4)], [history()], [history(8, 2, 10)]]
    customers = [c for r in requests for c in r]
    tables = request_tables(customers, [str(i) for i in range(len(customers))])
    sizes = [sum(len(c.transactions) for c in r) for r in requests]
    assert later_rows(tables.transactions, pd.Timestamp("2026-01-05"), sizes) == [2, 0, 2]
    assert later_rows(None, pd.Timestamp("2026-01-05"), sizes) == [0, 0, 0]


def test_duplicate_ids_are_found() -> None:
    customers = [_customer(), _customer(customer_id="y"), _customer()]
    assert duplicate_ids(customers) == [2]


def test_the_readme_curl_body_is_the_example_request() -> None:
    """The README's example is the one the tests send and the start-up check scores."""
    import json

    text = README.read_text()
    section = text[text.index("## Online scoring") :]
    body = re.search(r"<<'JSON'\n(.*?)\nJSON", section, re.DOTALL)
    assert body is not None
    assert json.loads(body.group(1)) == EXAMPLE_REQUEST


# --- the guard ---------------------------------------------------------------------------------


def _call(guard_config: ServiceConfig, client: str, path: str = "/score") -> int:
    """Status of one request through the guard (the app behind it answers 200)."""
    import asyncio

    from serving.online import Guard

    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "client": (client, 5000), "headers": []}
    asyncio.run(Guard(app, guard_config)(scope, receive, send))
    return int(sent[0]["status"])


def test_without_a_token_only_this_machine_is_served() -> None:
    open_config = ServiceConfig(token=None, tracking_uri="", store_url="")
    assert _call(open_config, "127.0.0.1") == 200
    assert _call(open_config, "10.0.0.5") == 403
    assert _call(open_config, "10.0.0.5", "/readyz") == 200
    insecure = ServiceConfig(token=None, tracking_uri="", store_url="", insecure=True)
    assert _call(insecure, "10.0.0.5") == 200
    with_token = ServiceConfig(token="t", tracking_uri="", store_url="")
    assert _call(with_token, "10.0.0.5") == 401


# --- the scoring queue -------------------------------------------------------------------------

AS_OF = pd.Timestamp("2026-11-01")


class RecordedCalls:
    """A stand-in for `score_requests` that records how many requests each call scored."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.hold_first = threading.Event()  # the first call blocks until this is set

    def __call__(
        self, champion: object, requests: list[list[CustomerHistory]], as_of: pd.Timestamp
    ) -> list[ScoreResponse]:
        self.sizes.append(len(requests))
        if len(self.sizes) == 1:
            assert self.hold_first.wait(10)
        answer = ScoreResponse(model_version="1", as_of=as_of.to_pydatetime(), scores=[])
        return [answer] * len(requests)


def scoring_queue(score: ScoreRequests, max_wait: float, arrival_gap: float) -> ScoringQueue:
    champion = Champion(None, "1", dt.datetime(2026, 11, 1))  # type: ignore[arg-type]
    holder: Any = SimpleNamespace(current=champion)
    return ScoringQueue(holder, max_wait=max_wait, arrival_gap=arrival_gap, score=score)


async def requests_at(scoring: ScoringQueue, delays: list[float]) -> list[float]:
    """One request after each delay (seconds after the previous); each one's wait, in seconds."""

    async def one() -> float:
        started = time.monotonic()
        await scoring.score(example_customers(), AS_OF)
        return time.monotonic() - started

    tasks = []
    for delay in delays:
        await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    return list(await asyncio.gather(*tasks))


async def busy_first_call(
    scoring: ScoringQueue, calls: RecordedCalls, arriving: int, then: list[float] | None = None
) -> None:
    """A first call that `arriving` requests find busy; `then`: requests after it ends."""
    first = asyncio.create_task(requests_at(scoring, [0.0]))
    waiting = asyncio.create_task(requests_at(scoring, [0.2] + [0.0] * (arriving - 1)))
    await asyncio.sleep(0.4)
    calls.hold_first.set()
    await asyncio.gather(first, waiting, requests_at(scoring, then or []))


def test_the_requests_of_one_turn_of_the_event_loop_are_one_call() -> None:
    """A burst the loop reads at once goes together, however long parsing it takes."""
    calls = RecordedCalls()
    calls.hold_first.set()
    scoring = scoring_queue(calls, max_wait=0.0, arrival_gap=0.0)

    async def parsed_then_scored() -> None:
        time.sleep(0.05)  # parsing: the loop is busy, and the scoring thread free to run
        await scoring.score(example_customers(), AS_OF)

    async def scenario() -> None:
        await asyncio.gather(*(parsed_then_scored() for _ in range(5)))
        await asyncio.gather(*(parsed_then_scored() for _ in range(3)))

    asyncio.run(scenario())
    scoring.close()
    assert calls.sizes == [5, 3]


def test_a_call_waits_for_the_requests_the_loop_is_parsing() -> None:
    """Requests parsed in the event loop's current turn join the call, however few came last.

    The first round of new clients: one request is handed over alone, and the thread, finding
    the others being parsed, waits for them instead of scoring it alone.
    """
    calls = RecordedCalls()
    scoring = scoring_queue(calls, max_wait=2.0, arrival_gap=0.02)

    async def parsed_slowly() -> None:
        time.sleep(0.3)  # parsing: the loop's turn goes on; meanwhile the first call ends
        await scoring.score(example_customers(), AS_OF)

    async def scenario() -> None:
        threading.Timer(0.25, calls.hold_first.set).start()
        busy = asyncio.create_task(requests_at(scoring, [0.0, 0.05]))
        await asyncio.sleep(0.1)
        # One turn: the first request is parsed, then the second takes the loop 0.3 s.
        await asyncio.gather(scoring.score(example_customers(), AS_OF), parsed_slowly())
        await busy

    asyncio.run(scenario())
    scoring.close()
    # The first call; then the one handed over while it worked, with the two being parsed.
    assert calls.sizes == [1, 3]


def test_under_steady_load_a_call_waits_for_the_clients_of_the_last_cycle() -> None:
    calls = RecordedCalls()
    scoring = scoring_queue(calls, max_wait=5.0, arrival_gap=1.0)

    async def scenario() -> None:
        # Two requests come while the first call works: three clients are in play, so the
        # next call takes the two waiting and waits for the first client's next request.
        await busy_first_call(scoring, calls, arriving=2, then=[0.2])
        # Three again: the next call waits for all three, 0.2 s apart.
        await requests_at(scoring, [0.0, 0.2, 0.2])
        # A lone request waits one arrival gap for a partner that never comes ...
        (alone,) = await requests_at(scoring, [0.0])
        assert 0.9 < alone < 5.0
        # ... and after a call of one, nothing waits: 0.2 s apart is two calls.
        first_wait, _ = await requests_at(scoring, [0.0, 0.2])
        assert first_wait < 0.15

    asyncio.run(scenario())
    scoring.close()
    assert calls.sizes == [1, 3, 3, 1, 1, 1]


def test_a_request_waits_for_others_at_most_max_wait() -> None:
    calls = RecordedCalls()
    scoring = scoring_queue(calls, max_wait=1.0, arrival_gap=1.0)

    async def scenario() -> list[float]:
        await busy_first_call(scoring, calls, arriving=4)
        # The last call had four; these come 0.4 s apart, and max_wait ends the call at 1 s.
        return await requests_at(scoring, [0.0, 0.4, 0.4, 0.8])

    waits = asyncio.run(scenario())
    scoring.close()
    assert calls.sizes == [1, 4, 3, 1]
    assert 0.8 < waits[0] < 1.5
    # The metrics count what the calls did: 4 calls answered 9 requests.
    assert "vafa_scoring_calls_total 4\n" in scoring.metrics()
    assert "vafa_scoring_requests_total 9\n" in scoring.metrics()


def test_a_lone_client_that_asks_again_at_once_never_waits() -> None:
    """Its next request follows the answer: the same client, not a second one to wait for."""
    calls = RecordedCalls()
    calls.hold_first.set()
    scoring = scoring_queue(calls, max_wait=5.0, arrival_gap=1.0)

    async def scenario() -> float:
        started = time.monotonic()
        for _ in range(30):
            await scoring.score(example_customers(), AS_OF)
        return time.monotonic() - started

    elapsed = asyncio.run(scenario())
    scoring.close()
    assert calls.sizes == [1] * 30
    assert elapsed < 1.0  # one wait for a second client would take a whole arrival gap


def test_one_failing_request_does_not_fail_the_others_of_its_call() -> None:
    sizes: list[int] = []

    def score(champion: Any, requests: list[list[CustomerHistory]], as_of: pd.Timestamp) -> Any:
        sizes.append(len(requests))
        if any(c.customer_id == "bad" for r in requests for c in r):
            raise ValueError("cannot score")
        return [ScoreResponse(model_version="1", as_of=as_of, scores=[]) for _ in requests]

    scoring = scoring_queue(score, max_wait=0.0, arrival_gap=0.0)

    async def scenario() -> list[Any]:
        ids = ["a", "bad", "b"]
        requests = (scoring.score([_customer(customer_id=i)], AS_OF) for i in ids)
        return await asyncio.gather(*requests, return_exceptions=True)

    good, bad, other = asyncio.run(scenario())
    assert sizes == [3, 1, 1, 1]  # the call of three failed; each was then scored alone
    assert isinstance(good, ScoreResponse) and isinstance(other, ScoreResponse)
    assert isinstance(bad, RuntimeError) and str(bad) == "scoring failed"
    scoring.close()
    no_model: Any = SimpleNamespace(current=None)
    waiting_for_a_model = ScoringQueue(no_model, score=score)
    with pytest.raises(NotReadyError):
        asyncio.run(waiting_for_a_model.score([_customer()], AS_OF))
    waiting_for_a_model.close()
    assert sizes == [3, 1, 1, 1]  # nothing is scored without a model


def test_no_batch_wait_scores_what_is_waiting_at_once() -> None:
    calls = RecordedCalls()
    scoring = scoring_queue(calls, max_wait=0.0, arrival_gap=1.0)

    async def scenario() -> list[float]:
        await busy_first_call(scoring, calls, arriving=2)
        return await requests_at(scoring, [0.0, 0.3])

    waits = asyncio.run(scenario())
    scoring.close()
    assert calls.sizes == [1, 2, 1, 1]
    assert waits[0] < 0.25
