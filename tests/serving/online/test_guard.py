"""The guard in front of the service: who is answered with and without a token."""

from __future__ import annotations

import asyncio
from typing import Any

from serving.online.config import ServiceConfig
from serving.online.guard import Guard


def _call(guard_config: ServiceConfig, client: str, path: str = "/score") -> int:
    """Status of one request through the guard (the app behind it answers 200)."""
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
