"""Request metrics by route: what anyone can send never adds a series."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from serving.online.metrics import OTHER, RequestMetrics, route


def series(text: bytes) -> int:
    """The number of samples in a Prometheus text (lines that are not comments)."""
    return sum(1 for line in text.decode().splitlines() if line and not line.startswith("#"))


def _requests(metrics: RequestMetrics, paths: list[str], method: str = "POST") -> list[int]:
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def run() -> None:
        for path in paths:
            scope = {"type": "http", "method": method, "path": path, "headers": []}
            await metrics(scope, receive, send)

    asyncio.run(run())
    return statuses


async def refuse(scope: Any, receive: Any, send: Any) -> None:
    """The app behind: a guard that refuses everything without a token."""
    await send({"type": "http.response.start", "status": 401, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_random_paths_add_no_series() -> None:
    """2,000 random paths once added 40,408 series and 173 MB to the worker."""
    metrics = RequestMetrics(refuse)
    _requests(metrics, ["/score", "/nothing-here"])
    before = series(metrics.render())
    _requests(metrics, [f"/{uuid.uuid4().hex}/{i}" for i in range(2000)])
    after = metrics.render()
    assert series(after) == before
    assert b'vafa_http_requests_total{endpoint="other",http_response_code="401"} 2001.0' in after


def test_routes_keep_their_name_and_the_scrape_adds_the_services_own() -> None:
    assert [route(p) for p in ("/score", "/readyz", "/static_content/x.css", "/score/")] == [
        "/score",
        "/readyz",
        "/static_content/",
        OTHER,
    ]
    metrics = RequestMetrics(refuse, extra=lambda: "vafa_model_loaded 1\n")
    assert _requests(metrics, ["/metrics"], method="GET") == [200]
    text = metrics.render()
    assert text.endswith(b"vafa_model_loaded 1\n")
    assert b'vafa_http_requests_total{endpoint="/metrics",http_response_code="200"} 1.0' in text
    assert b'vafa_http_request_duration_seconds_count{endpoint="/metrics"} 1.0' in text
