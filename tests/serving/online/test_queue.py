"""The scoring queue: which requests go together, how long they wait, failures, large requests."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from serving.online.champion import Champion
from serving.online.queue import NotReadyError, ScoreRequests, ScoringQueue
from serving.online.requests import RequestShape
from serving.online.responses import IgnoredRows, ScoreResponse, Unscored
from serving.online.schema import CustomerHistory, example_customers


def _customer(**fields: Any) -> CustomerHistory:
    return CustomerHistory.model_validate(
        {"customer_id": "x", "transactions": [{"ts": "2026-01-01", "amount": 5}], **fields}
    )


AS_OF = pd.Timestamp("2026-11-01")


class RecordedCalls:
    """A stand-in for `score_requests` that records how many requests each call scored."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.hold_first = threading.Event()  # the first call blocks until this is set

    def __call__(
        self,
        champion: object,
        requests: list[list[CustomerHistory]],
        as_of: pd.Timestamp,
        shape: object = None,
    ) -> list[ScoreResponse]:
        self.sizes.append(len(requests))
        if len(self.sizes) == 1:
            assert self.hold_first.wait(10)
        answer = ScoreResponse(model_version="1", as_of=as_of.to_pydatetime(), scores=[])
        return [answer] * len(requests)


def scoring_queue(
    score: ScoreRequests, max_wait: float, arrival_gap: float, **kwargs: Any
) -> ScoringQueue:
    champion = Champion(None, "1", dt.datetime(2026, 11, 1))  # type: ignore[arg-type]
    holder: Any = SimpleNamespace(current=champion)
    return ScoringQueue(holder, max_wait=max_wait, arrival_gap=arrival_gap, score=score, **kwargs)


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

    def score(
        champion: Any, requests: list[list[CustomerHistory]], as_of: pd.Timestamp, shape: Any
    ) -> Any:
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


# --- large requests: scored in parts, small ones in between ----------------------------------


def _history(name: str, rows: int, events: bool = False) -> CustomerHistory:
    return CustomerHistory.model_validate(
        {
            "customer_id": name,
            "transactions": [{"ts": "2026-01-01", "amount": 1}] * rows,
            **({"events": []} if events else {}),
        }
    )


class TimedCalls:
    """A stand-in for `score_requests` taking 1 ms a row; records each call's customers."""

    def __init__(self, holder: Any = None, swap_after_first: Champion | None = None) -> None:
        self.calls: list[list[str]] = []
        self.shapes: list[Any] = []
        self.holder, self.swap_after_first = holder, swap_after_first

    def __call__(
        self,
        champion: Champion,
        requests: list[list[CustomerHistory]],
        as_of: pd.Timestamp,
        shape: RequestShape | None = None,
    ) -> list[ScoreResponse]:
        self.calls.append([c.customer_id for r in requests for c in r])
        self.shapes.append(shape)
        time.sleep(0.001 * sum(len(c.transactions) for r in requests for c in r))
        if self.swap_after_first is not None and len(self.calls) == 1:
            self.holder.current = self.swap_after_first  # the registry moves mid-request
        return [
            ScoreResponse(
                model_version=champion.version,
                as_of=as_of.to_pydatetime(),
                scores=[{"customer_id": c.customer_id} for c in r if c.transactions],
                unscored=[
                    Unscored(customer_id=c.customer_id, reason="none")
                    for c in r
                    if not c.transactions
                ],
                ignored_rows=IgnoredRows(transactions=len(r)),
            )
            for r in requests
        ]


def test_small_requests_do_not_wait_behind_a_large_one() -> None:
    """A large request is scored in parts, one a round; requests that come meanwhile go next.

    Scored whole, the large request (2,000 rows: 2 s here) would hold the small one that
    came after it for all of that.
    """
    calls = TimedCalls()
    scoring = scoring_queue(calls, max_wait=0.0, arrival_gap=0.0, round_rows=200)
    large = [_history(f"big{i}", 100) for i in range(20)]
    finished: dict[str, float] = {}

    async def timed(name: str, customers: list[CustomerHistory], delay: float) -> float:
        await asyncio.sleep(delay)
        started = time.monotonic()
        await scoring.score(customers, AS_OF)
        finished[name] = time.monotonic()
        return time.monotonic() - started

    async def scenario() -> tuple[float, float]:
        return await asyncio.gather(  # type: ignore[return-value]
            timed("large", large, 0.0), timed("small", [_history("small", 2)], 0.3)
        )

    large_took, small_waited = asyncio.run(scenario())
    scoring.close()
    assert large_took > 1.5
    assert small_waited < 0.6, small_waited  # at most a part (0.2 s) ahead of it, and its own
    assert finished["small"] < finished["large"]
    assert max(len(call) for call in calls.calls) <= 3  # parts of about 200 rows (+ the small)
    assert ["small"] in calls.calls or any("small" in call for call in calls.calls)


def test_a_large_request_answers_once_in_order_with_one_champion_and_its_shape() -> None:
    first = Champion(None, "1", dt.datetime(2026, 11, 1))  # type: ignore[arg-type]
    second = Champion(None, "2", dt.datetime(2026, 11, 2))  # type: ignore[arg-type]
    holder: Any = SimpleNamespace(current=first)
    calls = TimedCalls(holder, swap_after_first=second)
    scoring = ScoringQueue(holder, round_rows=30, max_wait=0.0, arrival_gap=0.0, score=calls)
    # Only the last customer sends events: every part is scored with an events table.
    customers = [_history(f"c{i}", 0 if i == 4 else 10) for i in range(9)]
    customers.append(_history("last", 10, events=True))

    async def scenario() -> tuple[ScoreResponse, ScoreResponse]:
        large = await scoring.score(customers, AS_OF)
        later = await scoring.score([_history("later", 1)], AS_OF)
        return large, later

    large, later = asyncio.run(scenario())
    scoring.close()
    assert len(calls.calls) >= 4  # the large request in parts
    assert large.model_version == "1"  # the champion of its first part, though it moved
    assert later.model_version == "2"
    assert [s["customer_id"] for s in large.scores] == [
        c.customer_id for c in customers if c.transactions
    ]
    assert [u.customer_id for u in large.unscored] == ["c4"]
    assert large.ignored_rows.transactions == len(customers)  # summed over the parts
    assert all(shape is not None and shape.has_events for shape in calls.shapes[:-1])
    assert "vafa_scoring_requests_total 2\n" in scoring.metrics()


def test_a_part_that_fails_fails_its_request_only() -> None:
    def score(champion: Any, requests: list[list[CustomerHistory]], as_of: Any, shape: Any) -> Any:
        if any(c.customer_id == "bad" for r in requests for c in r):
            raise ValueError("cannot score")
        return [ScoreResponse(model_version="1", as_of=as_of, scores=[]) for _ in requests]

    scoring = scoring_queue(score, max_wait=0.0, arrival_gap=0.0, round_rows=20)
    large = [_history(f"c{i}", 10) for i in range(4)] + [_history("bad", 10)]

    async def scenario() -> list[Any]:
        return await asyncio.gather(
            scoring.score(large, AS_OF),
            scoring.score([_history("ok", 1)], AS_OF),
            return_exceptions=True,
        )

    failed, fine = asyncio.run(scenario())
    scoring.close()
    assert isinstance(failed, RuntimeError) and isinstance(fine, ScoreResponse)
