"""A connection that sends no complete request headers is closed; a slow answer is not cut."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from serving.online import connections
from serving.online.config import DEFAULT_HEADER_TIMEOUT_SECONDS

DEADLINE = 0.5


async def slow_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers after a second: longer than the header deadline."""
    if scope["type"] != "http":
        return
    await asyncio.sleep(1.0)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    connections.install(DEADLINE)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    config = uvicorn.Config(slow_app, port=free, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield free
    server.should_exit = True
    thread.join(10)
    connections.HeaderDeadline.seconds = DEFAULT_HEADER_TIMEOUT_SECONDS


def closed_after(port: int, *sent: bytes, wait: float = 5.0) -> tuple[float, bytes]:
    """Seconds until the server closed the connection after `sent`, and what it answered."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(wait)
        started = time.monotonic()
        received = b""
        for chunk in sent:
            sock.sendall(chunk)
            time.sleep(0.05)
        try:
            while data := sock.recv(4096):
                received += data
                if received.endswith(b"ok") and sent and sent[-1].endswith(b"\r\n\r\n"):
                    started = time.monotonic()  # answered: now idle, or half a next request
                    sock.sendall(b"GET / HTTP/1.1\r\nHo")
        except TimeoutError:
            return float("inf"), received
        return time.monotonic() - started, received


def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    seconds, _ = closed_after(port)
    assert seconds < DEADLINE + 1.0


def test_half_the_headers_are_not_waited_for(port: int) -> None:
    seconds, received = closed_after(port, b"POST /score HTTP/1.1\r\nHost: x\r\n")
    assert seconds < DEADLINE + 1.0 and received == b""


def test_a_slow_answer_is_not_cut_and_half_a_next_request_is(port: int) -> None:
    """The deadline covers headers only; it starts again after each answer."""
    seconds, received = closed_after(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"ok")
    assert seconds < DEADLINE + 1.0
