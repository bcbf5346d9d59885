"""One thread builds features and scores; the requests that arrive meanwhile go in its next call.

Most of a call's cost is fixed, so batching is where the throughput is (docs/online.md,
"The batching queue").
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import pandas as pd

from serving.online.champion import Champion, ChampionHolder
from serving.online.config import DEFAULT_BATCH_WAIT_MS
from serving.online.requests import request_shape, score_requests
from serving.online.schema import CustomerHistory, ScoreResponse

log = logging.getLogger("vafa.service")

BATCH_CUSTOMERS = 2000  # a queue call takes waiting requests up to about this many customers
# The longest gap between two arrivals a call waits for (why 5 ms: docs/online.md).
ARRIVAL_GAP_SECONDS = 0.005


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

    Three things keep the requests of one round together, each waiting at most `max_wait`
    seconds (docs/online.md explains why each is needed):

    - The event loop hands requests over once per turn of the loop, all those its turn has
      parsed: a burst read at once (a round of clients, new connections) is one hand-over.
    - A call waits for the requests the loop's current turn has parsed and not yet handed
      over: when a burst spans two turns, its first request does not go alone.
    - A call waits for as many requests as the last cycle brought (those the last call
      scored and those that came while it worked), at most `arrival_gap` between two.

    A lone client pays nothing: after a cycle of one request nothing waits. `metrics` counts
    calls and requests, so the mean batch is visible in production.
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
            groups.setdefault((job.as_of, *request_shape(job.customers)), []).append(job)
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
