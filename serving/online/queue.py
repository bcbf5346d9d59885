"""One thread builds features and scores; the requests that arrive meanwhile go in its next call.

Most of a call's cost is fixed, so batching is where the throughput is (docs/online.md,
"The batching queue"). A call, a round, scores at most about `ROUND_ROWS` rows: a large
request is scored in parts over several rounds, so small requests never wait behind it.
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
from serving.online.requests import RequestShape, request_shape, score_requests
from serving.online.responses import IgnoredRows, ScoreResponse
from serving.online.schema import CustomerHistory

log = logging.getLogger("vafa.service")

# A round takes waiting requests (or parts of one) up to about this many rows and customers,
# so that a round stays short (docs/online.md, "The batching queue").
ROUND_ROWS = 20_000
ROUND_CUSTOMERS = 500
# The longest gap between two arrivals a call waits for (why 5 ms: docs/online.md).
ARRIVAL_GAP_SECONDS = 0.005


class NotReadyError(RuntimeError):
    """No model is loaded yet."""


def _rows(customer: CustomerHistory) -> int:
    return len(customer.transactions) + len(customer.events or ()) + 1


@dataclass(eq=False)
class _Job:
    """One request; a large one is scored in parts, each in a round, all by one champion."""

    customers: list[CustomerHistory]
    as_of: pd.Timestamp
    future: Future[ScoreResponse] = field(default_factory=Future)
    parts: deque[list[CustomerHistory]] | None = None  # split on its first round
    shape: RequestShape | None = None
    champion: Champion | None = None  # pinned on its first round
    answers: list[ScoreResponse] = field(default_factory=list)
    failure: Exception | None = None

    def next_part(self, round_rows: int, round_customers: int) -> list[CustomerHistory]:
        """The customers to score in this round (the whole request, if it fits one)."""
        if self.parts is None:
            self.shape = request_shape(self.customers)
            self.parts = deque(_split(self.customers, round_rows, round_customers))
        return self.parts.popleft()

    @property
    def finished(self) -> bool:
        """Failed, or every part answered."""
        return self.failure is not None or (self.parts is not None and not self.parts)


def _split(
    customers: list[CustomerHistory], round_rows: int, round_customers: int
) -> list[list[CustomerHistory]]:
    """Consecutive runs of customers within a round's rows and customers (a big one alone)."""
    parts: list[list[CustomerHistory]] = [[]]
    rows = 0
    for customer in customers:
        size = _rows(customer)
        if parts[-1] and (rows + size > round_rows or len(parts[-1]) >= round_customers):
            parts.append([])
            rows = 0
        parts[-1].append(customer)
        rows += size
    return parts


def _merged(answers: list[ScoreResponse]) -> ScoreResponse:
    """One answer from the answers of a request's parts, in order."""
    if len(answers) == 1:
        return answers[0]
    first = answers[0]
    return ScoreResponse.model_construct(
        model_version=first.model_version,
        as_of=first.as_of,
        as_of_from=first.as_of_from,
        scores=[row for answer in answers for row in answer.scores],
        unscored=[u for answer in answers for u in answer.unscored],
        ignored_rows=IgnoredRows(
            transactions=sum(a.ignored_rows.transactions for a in answers),
            events=sum(a.ignored_rows.events for a in answers),
        ),
    )


ScoreRequests = Callable[..., list[ScoreResponse]]
Piece = tuple[_Job, list[CustomerHistory]]


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

    A call scores at most about `round_rows` rows and `round_customers` customers. A larger
    request is split into parts; after each part it goes to the back of the line, so requests
    that came meanwhile are scored in the next round, not after the whole of it. Its parts
    are all scored by the champion of its first round, and answered together.
    """

    def __init__(
        self,
        holder: ChampionHolder,
        round_rows: int = ROUND_ROWS,
        round_customers: int = ROUND_CUSTOMERS,
        max_wait: float = DEFAULT_BATCH_WAIT_MS / 1000,
        arrival_gap: float = ARRIVAL_GAP_SECONDS,
        score: ScoreRequests | None = None,
    ) -> None:
        self._holder = holder
        self._round_rows = round_rows
        self._round_customers = round_customers
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
            if not batch:
                continue
            self._score(batch)
            while self._fetch(0):  # those who came while the call worked
                pass
            jobs = list({id(job): job for job, _ in batch}.values())
            # The clients in play: those just scored and those who came meanwhile. Counted
            # before the answers go out: a request that follows an answer is its client again.
            self._expected = len(jobs) + sum(1 for job in self._waiting if job not in jobs)
            self.calls += 1
            for job in jobs:
                if job.future.done() or not job.finished:
                    continue
                self.requests += 1
                job.customers, job.parts = [], None  # its rows go as soon as its caller is done
                if job.failure is not None:
                    job.future.set_exception(job.failure)
                else:
                    job.future.set_result(_merged(job.answers))
            del batch, jobs  # a large request's rows are not kept alive until the next round

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

    def _collect(self) -> list[Piece]:
        """The jobs waiting, then those coming soon while fewer than expected, to a round's size.

        A job with parts left goes back to the end of the line, behind those waiting now.
        """
        batch: list[Piece] = []
        taken: set[int] = set()  # the jobs of this round
        rows = customers = 0
        deadline = time.monotonic() + self._max_wait
        while rows < self._round_rows and customers < self._round_customers:
            if not self._waiting and not self._fetch(0):
                # Wait while fewer than expected came, or while the event loop's current turn
                # holds requests it has parsed and will hand over when the turn ends.
                wait = min(self._arrival_gap, deadline - time.monotonic())
                if wait <= 0 or (len(taken) >= self._expected and not self._parsed):
                    break
                if not self._fetch(wait) and not self._parsed:
                    break
                continue
            job = self._waiting.popleft()
            if job.failure is not None or job.future.done():
                continue  # an earlier part failed, or its client gave up: the rest is not scored
            part = job.next_part(self._round_rows, self._round_customers)
            batch.append((job, part))
            taken.add(id(job))
            rows += sum(_rows(c) for c in part)
            customers += len(part)
            if job.parts:
                self._waiting.append(job)
        return batch

    def _score(self, batch: list[Piece]) -> None:
        """Score the round's parts, each job's answers or failure recorded on the job."""
        current = self._holder.current  # one version for the jobs this round starts
        groups: dict[tuple[object, ...], list[Piece]] = {}
        for job, part in batch:
            if job.champion is None:
                if current is None:
                    job.failure = NotReadyError("no model loaded yet")
                    continue
                job.champion = current
            groups.setdefault((id(job.champion), job.as_of, job.shape), []).append((job, part))
        for pieces in groups.values():
            for (job, _), answer in self._score_group(pieces):
                if isinstance(answer, Exception):
                    job.failure = answer
                else:
                    job.answers.append(answer)

    def _score_group(self, pieces: list[Piece]) -> list[tuple[Piece, ScoreResponse | Exception]]:
        """Parts alike in one call; if that fails, each alone: one must not fail the others."""
        job = pieces[0][0]
        assert job.champion is not None
        try:
            results = self._score_requests(
                job.champion, [part for _, part in pieces], job.as_of, job.shape
            )
        except Exception:
            if len(pieces) > 1:
                return [answer for piece in pieces for answer in self._score_group([piece])]
            log.exception("scoring failed")
            return [(pieces[0], RuntimeError("scoring failed"))]
        return list(zip(pieces, results, strict=True))
