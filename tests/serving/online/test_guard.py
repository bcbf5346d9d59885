"""The guard in front of the service: who is answered, with what, and who must wait."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from serving.online.config import ServiceConfig
from serving.online.guard import FailedLogins, Guard

TOKEN = "a-token-of-24-characters"
WITH_TOKEN = ServiceConfig(token=TOKEN, tracking_uri="", store_url="", auth_failures=3)
OPEN = ServiceConfig(token=None, tracking_uri="", store_url="")


def _call(
    guard: Guard | ServiceConfig,
    client: str = "127.0.0.1",
    path: str = "/score",
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Status, headers and body of one request through the guard (the app answers 200)."""
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "client": (client, 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    if isinstance(guard, ServiceConfig):
        guard = Guard(app, guard)
    else:
        guard.app = app
    asyncio.run(guard(scope, receive, send))
    return int(sent[0]["status"]), dict(sent[0]["headers"]), sent[1]["body"]


def _bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_without_a_token_only_this_machine_is_served() -> None:
    assert _call(OPEN, "127.0.0.1")[0] == 200
    assert _call(OPEN, "10.0.0.5")[0] == 403
    assert _call(OPEN, "10.0.0.5", "/readyz")[0] == 200
    insecure = ServiceConfig(token=None, tracking_uri="", store_url="", insecure=True)
    assert _call(insecure, "10.0.0.5")[0] == 200
    assert _call(WITH_TOKEN, "10.0.0.5")[0] == 401


@pytest.mark.parametrize(
    "header", ["X-Real-IP", "X-Forwarded-For", "Forwarded", "X-Forwarded-Host", "True-Client-IP"]
)
def test_a_request_through_a_proxy_is_not_this_machines(header: str) -> None:
    """A same-host proxy connects from loopback: its forwarding header says who really asks."""
    status, _, body = _call(OPEN, "127.0.0.1", headers={header: "203.0.113.9"})
    assert status == 403 and b"only this machine" in body
    assert _call(OPEN, "127.0.0.1", "/livez", headers={header: "203.0.113.9"})[0] == 200


@pytest.mark.parametrize("path", ["/score", "/lookup", "/status", "/reload"])
@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "text/plain"],
)
def test_the_api_takes_json_only(path: str, content_type: str) -> None:
    """BentoML's form parser answered multipart bodies with 500."""
    headers = {**_bearer(), "Content-Type": content_type}
    status, _, body = _call(WITH_TOKEN, path=path, headers=headers)
    assert status == 415 and b"application/json" in body
    json_headers = {**_bearer(), "Content-Type": "application/json; charset=utf-8"}
    assert _call(WITH_TOKEN, path=path, headers=json_headers)[0] == 200
    assert _call(WITH_TOKEN, path=path, headers=_bearer())[0] == 200  # no type: JSON


def test_wrong_tokens_make_a_client_wait() -> None:
    """After `auth_failures` wrong tokens: 429 with Retry-After, the token unchecked."""
    guard = Guard(lambda *a: None, WITH_TOKEN)  # type: ignore[arg-type,return-value]
    statuses = [_call(guard, "10.0.0.7", headers=_bearer("x" * 20))[0] for _ in range(3)]
    assert statuses == [401, 401, 401]
    status, headers, _ = _call(guard, "10.0.0.7", headers=_bearer())
    assert status == 429 and int(headers[b"retry-after"]) >= 1
    assert _call(guard, "10.0.0.8", headers=_bearer())[0] == 200  # other clients are served
    assert _call(guard, "10.0.0.7", "/readyz")[0] == 200  # probes stay open
    guard.logins = FailedLogins(3, first_wait=0.0)
    for _ in range(2):
        _call(guard, "10.0.0.7", headers=_bearer("x" * 20))
    assert _call(guard, "10.0.0.7", headers=_bearer())[0] == 200  # a right token clears
    assert guard.logins.retry_after("10.0.0.7") == 0


def test_the_wait_doubles_and_is_forgotten() -> None:
    now = [0.0]
    logins = FailedLogins(
        2, first_wait=1.0, longest_wait=8.0, forget_seconds=60, clock=lambda: now[0]
    )
    waits = []
    for _ in range(6):
        logins.failed("c")
        waits.append(logins.retry_after("c"))
    assert waits == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0]
    now[0] = 61.0
    assert logins.retry_after("c") == 0.0


def test_remembered_clients_are_bounded() -> None:
    logins = FailedLogins(1, max_clients=100)
    for client in range(1000):
        logins.failed(f"10.0.{client // 256}.{client % 256}")
    assert len(logins._clients) == 100


@pytest.mark.parametrize("path", ["/", "/docs.json", "/static_content/swagger-ui.css"])
def test_the_docs_need_no_token(path: str) -> None:
    """They hold no data; the page needs its scripts and the description."""
    assert _call(WITH_TOKEN, "10.0.0.5", path, method="GET")[0] == 200
    assert _call(WITH_TOKEN, "10.0.0.5", "/schema.json", method="GET")[0] == 401


def test_the_description_is_served_by_the_guard() -> None:
    status, headers, body = _call(WITH_TOKEN, "10.0.0.5", "/docs.json", method="GET")
    spec = json.loads(body)
    assert status == 200 and headers[b"content-type"] == b"application/json"
    assert spec["info"]["title"] == "Vafa online scoring" and "/score" in spec["paths"]
