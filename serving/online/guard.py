"""The service's front door: token, back-off, body type and size, before anything else runs.

Also the OpenAPI description (served from here, open like the docs page) and the log filter
that keeps request bodies out of the log.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving.online.config import (
    INSECURE_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    ServiceConfig,
    is_loopback,
)

# Probes, scrapers and the API's description stay open: they hold no customer data.
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/", "/docs.json"})
OPEN_PREFIXES = ("/static_content/",)  # the docs page's scripts and styles
API_PATHS = frozenset({"/score", "/lookup", "/status", "/reload"})
# A request carrying any of these came through a proxy: its client is not this machine,
# whatever address the proxy connects from.
FORWARDING_HEADERS = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-real-ip",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"x-original-forwarded-for",
        b"true-client-ip",
        b"cf-connecting-ip",
        b"fastly-client-ip",
    }
)
JSON_TYPE = b"application/json"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_open(path: str) -> bool:
    """Paths answered without a token."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class FailedLogins:
    """Wrong tokens per client: past `allowed`, the client must wait, twice as long each time.

    While it waits, its requests get 429 with Retry-After, the token unchecked: guessing
    slows to a crawl. A right token clears the count; a client quiet for `forget_seconds`
    starts afresh. At most `max_clients` are remembered (the oldest forgotten first), so
    many addresses cannot grow memory without bound.
    """

    def __init__(
        self,
        allowed: int,
        first_wait: float = 1.0,
        longest_wait: float = 300.0,
        forget_seconds: float = 900.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed = allowed
        self.first_wait, self.longest_wait = first_wait, longest_wait
        self.forget_seconds, self.max_clients = forget_seconds, max_clients
        self._clock = clock
        self._clients: OrderedDict[str, tuple[int, float, float]] = OrderedDict()

    def retry_after(self, client: str) -> float:
        """Seconds the client must still wait before its token is checked (0: none)."""
        if not self._clients:
            return 0.0
        state = self._clients.get(client)
        if state is None:
            return 0.0
        _, blocked_until, last = state
        now = self._clock()
        if now - last > self.forget_seconds:
            del self._clients[client]
            return 0.0
        return max(0.0, blocked_until - now)

    def failed(self, client: str) -> None:
        """Count a wrong or missing token."""
        now = self._clock()
        failures, _, _ = self._clients.pop(client, (0, 0.0, now))
        failures += 1
        blocked_until = 0.0
        if failures >= self.allowed:
            wait = self.first_wait * 2.0 ** (failures - self.allowed)
            blocked_until = now + min(self.longest_wait, wait)
        self._clients[client] = (failures, blocked_until, now)
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """A right token: the client's count starts again."""
        if self._clients:
            self._clients.pop(client, None)


class Guard:
    """ASGI middleware: bearer token on all but open paths, back-off, body type and size limit.

    The token is compared in constant time; neither it nor any body is logged. Without a
    token, only clients on this machine are answered unless the service was told it may run
    insecure: that holds however the server was started (`vafa serve` checks the address
    before binding; a Bento container's `bentoml serve` binds 0.0.0.0), and a request through
    a proxy (a forwarding header) counts as another machine's. The API takes JSON only (415
    otherwise: BentoML's form parser answered multipart bodies with 500).
    """

    def __init__(self, app: ASGIApp, config: ServiceConfig | None = None) -> None:
        self.app = app
        config = config or ServiceConfig.from_env()
        self.token = None if config.token is None else config.token.encode()
        self.insecure = config.insecure
        self.max_bytes = config.max_request_bytes
        self.logins = FailedLogins(config.auth_failures)
        self._spec: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse what must be refused before any of the application runs."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == "/docs.json" and scope.get("method") == "GET":
            await _reply_bytes(send, 200, self.spec(), b"application/json")
            return
        headers = dict(scope.get("headers") or [])
        if not is_open(path):
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                await refusal(send)
                return
        if path in API_PATHS:
            media_type = headers.get(b"content-type", JSON_TYPE).partition(b";")[0].strip()
            if media_type.lower() != JSON_TYPE:
                await _reply(send, 415, "send the body as JSON (Content-Type: application/json)")
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

    def _refusal(
        self, scope: Scope, headers: dict[bytes, bytes]
    ) -> Callable[[Send], Awaitable[None]] | None:
        """How to refuse a request to a guarded path, or None to let it through."""
        client = (scope.get("client") or ("",))[0]
        if self.token is None:
            if self.insecure:
                return None
            if is_loopback(client) and FORWARDING_HEADERS.isdisjoint(headers):
                return None
            message = (
                f"no token is configured, so only this machine is served: set {TOKEN_ENV} "
                f"or {TOKEN_FILE_ENV} (or {INSECURE_ENV}=1)"
            )
            return lambda send: _reply(send, 403, message)
        wait = self.logins.retry_after(client)
        if wait > 0:
            seconds = str(math.ceil(wait)).encode()
            message = "too many wrong tokens from this client: try again later"
            return lambda send: _reply(send, 429, message, [(b"retry-after", seconds)])
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token):
            self.logins.succeeded(client)
            return None
        self.logins.failed(client)
        return lambda send: _reply(
            send,
            401,
            "missing or wrong bearer token (Authorization: Bearer <token>)",
            [(b"www-authenticate", b"Bearer")],
        )

    def spec(self) -> bytes:
        """The OpenAPI description, built on first use."""
        if self._spec is None:
            from serving.online.openapi import openapi_spec

            self._spec = json.dumps(openapi_spec()).encode()
        return self._spec


async def _reply(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    await _reply_bytes(send, status, body, b"application/json", headers)


async def _reply_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
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
