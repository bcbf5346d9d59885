"""A deadline for a connection's request headers, which uvicorn does not have.

uvicorn closes a connection idle after an answer (its keep-alive timeout) but never one that
was opened and sent nothing, or half its headers: each such connection stayed open for good.
`install` makes uvicorn's HTTP protocol close a connection that has not sent complete request
headers within `HeaderDeadline.seconds` of opening, or of its last answer. A body that stalls
is bounded by the service's request timeout (BentoML's `traffic.timeout`), as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn.protocols.http.auto as auto

from serving.online.config import DEFAULT_HEADER_TIMEOUT_SECONDS

_Protocol: Any = auto.AutoHTTPProtocol  # httptools' when installed, else h11's


class HeaderDeadline(_Protocol):
    """uvicorn's HTTP protocol, with a deadline for each request's headers."""

    seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:
        """Start the deadline for the first request's headers."""
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        """Start the deadline for the next request's headers."""
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline."""
        deadline = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        deadline = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
        # uvicorn starts a new cycle when a request's headers are complete: if the cycle is
        # still the one of the last answer (or none) at the deadline, no request came whole.
        self._header_deadline = self.loop.call_later(
            self.seconds, self._header_deadline_passed, self.cycle
        )

    def _header_deadline_passed(self, cycle: object) -> None:
        if self.cycle is cycle and not self.transport.is_closing():
            self.transport.close()


def install(seconds: float) -> None:
    """Make uvicorn's default HTTP protocol `HeaderDeadline`, with this deadline.

    Must run before uvicorn loads its configuration (the service module does, on import:
    BentoML's worker imports the service first); `seconds` may be set again later, before the
    first connection (the service sets it from its configuration).
    """
    HeaderDeadline.seconds = seconds
    auto.AutoHTTPProtocol = HeaderDeadline
