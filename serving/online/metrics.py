"""Request metrics labelled by route, and `/metrics` (Prometheus) itself.

BentoML's own metrics labelled every raw request path, before the token check, so anyone could
grow the worker's memory and `/metrics` without bound (docs/online.md, "Metrics"). Here a path
the service does not serve is counted as `other`, so what anyone can send never adds a series.
BentoML's are switched off in the service's config; with several workers, Prometheus'
multiprocess mode (BentoML sets `PROMETHEUS_MULTIPROC_DIR` for them) sums all their counts.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as prometheus_text
from prometheus_client.multiprocess import MultiProcessCollector

from serving.online.guard import (
    API_PATHS,
    OPEN_PATHS,
    OPEN_PREFIXES,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
)

ROUTES = API_PATHS | OPEN_PATHS | {"/schema.json"}
OTHER = "other"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def route(path: str) -> str:
    """The label of a request path: a route the service serves, else `other`."""
    if path in ROUTES:
        return path
    for prefix in OPEN_PREFIXES:
        if path.startswith(prefix):
            return prefix
    return OTHER


class RequestMetrics:
    """ASGI middleware: counts and times every request by route, and answers `GET /metrics`.

    Outermost of the service's own middleware, so refused requests are counted too. `extra`
    gives text to append to the scrape (the service's model and batching metrics).
    """

    def __init__(self, app: ASGIApp, extra: Callable[[], str] | None = None) -> None:
        self.app = app
        self.extra = extra
        self.multiprocess = "PROMETHEUS_MULTIPROC_DIR" in os.environ
        # Multiprocess values go to files, read back by a collector at each scrape.
        self.registry = None if self.multiprocess else CollectorRegistry()
        self.requests = Counter(
            "vafa_http_requests",
            "HTTP requests by route (`other`: a path the service does not serve) and status.",
            ["endpoint", "http_response_code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "vafa_http_request_duration_seconds",
            "HTTP request duration by route, until the last byte of the answer is handed over.",
            ["endpoint"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request; answer a scrape."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        endpoint = route(scope.get("path", ""))
        status = 500  # unless an answer starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if endpoint == "/metrics" and scope.get("method") == "GET":
                await self._scrape(sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            self.requests.labels(endpoint, str(status)).inc()
            self.duration.labels(endpoint).observe(time.perf_counter() - started)

    async def _scrape(self, send: Send) -> None:
        body = await asyncio.to_thread(self.render)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", CONTENT_TYPE_LATEST.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def render(self) -> bytes:
        """The Prometheus text of the request metrics and the service's own."""
        if self.registry is not None:
            text = prometheus_text(self.registry)
        else:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            for metric in registry.collect():
                if metric.type == "histogram":  # buckets, then count, then sum, per label set
                    metric.samples.sort(key=_histogram_order)
            text = prometheus_text(registry)
        extra = self.extra() if self.extra is not None else ""
        return text + extra.encode()


def _histogram_order(sample: Any) -> tuple[object, ...]:
    labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
    if sample.name.endswith("_bucket"):
        return (labels, 0, float(sample.labels["le"]))
    return (labels, 1 if sample.name.endswith("_count") else 2, 0.0)
