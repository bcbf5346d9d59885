"""The service's front door: the bearer token and the body-size limit, before anything else runs.

Also the log filter that keeps request bodies out of the log.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving.online.config import (
    INSECURE_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    ServiceConfig,
    is_loopback,
)

# Health, liveness, readiness and metrics stay open for probes and scrapers (contract).
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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
