"""Injected failures: what each `Fault` does to a call-route request, and the fault queue."""

from __future__ import annotations

import enum
import json
from collections import deque

from aiohttp import web

from ._rate_window import RateState

INTERNAL_FAILURE = "internal failure"
RATE_LIMITED_MESSAGE = "Rate limit exceeded. Try again later."
HTML_502_BODY = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class Fault(enum.Enum):
    """A failure the fake server plays instead of handling a call-route request.

    Faults apply after the token check and before the rate-limit check, so a faulted
    request never counts against the token's window.
    """

    DROP_AFTER_READ = "drop_after_read"
    """Read the whole body, record the request, then close the connection unanswered."""
    HANG = "hang"
    """Record the request and never answer; released (connection closed) by ``stop()``."""
    SERVER_ERROR = "server_error"
    """``500`` with RyzeAPI's JSON envelope, message ``"internal failure"``."""
    HTML_502 = "html_502"
    """``502`` with a ``text/html`` body, as a reverse proxy would send."""
    RATE_LIMITED = "rate_limited"
    """``429`` envelope with ``X-RateLimit-*`` headers, remaining 0; not counted."""
    REDIRECT = "redirect"
    """``307`` to ``/redirected`` on the same server; a followed redirect is recorded."""
    TRUNCATED = "truncated"
    """``200`` whose Content-Length exceeds the bytes sent, then the connection closes."""


class FaultQueue:
    """Queued one-shot faults (consumed first, in order) over an optional persistent one."""

    def __init__(self) -> None:
        self._queued: deque[Fault] = deque()
        self.persistent: Fault | None = None

    def push(self, fault: Fault, times: int) -> None:
        """Queue `fault` for the next `times` call-route requests."""
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a Fault, got {type(fault).__name__}")
        if times < 1:
            raise ValueError("times must be at least 1")
        self._queued.extend([fault] * times)

    def take(self) -> Fault | None:
        """The fault for the request being handled now, if any."""
        if self._queued:
            return self._queued.popleft()
        return self.persistent

    def clear(self) -> None:
        """Drop every queued and persistent fault."""
        self._queued.clear()
        self.persistent = None


def error_body(message: str) -> dict[str, object]:
    """RyzeAPI's error envelope."""
    return {"success": False, "error": {"message": message}}


class Unanswered(web.Response):
    """Returned by a handler whose connection is already closed: never sent.

    aiohttp finds the transport closing when it tries to write this, and treats it as a
    premature client disconnection, quietly (no error log, no warning).
    """


def drop_connection(request: web.BaseRequest) -> Unanswered:
    """Close the connection without a response.

    `close()` (not `abort()`) so the peer sees a clean FIN rather than a reset, and gets
    any bytes already written: the client reports "server disconnected", exactly the
    ambiguous case it must handle.
    """
    transport = request.transport
    if transport is not None:
        transport.close()
    return Unanswered()


def rate_limited(state: RateState) -> web.Response:
    """A 429 as the real limiter sends it (no Retry-After, remaining 0)."""
    headers = RateState(state.limit, 0, state.reset_at).headers()
    return web.json_response(error_body(RATE_LIMITED_MESSAGE), status=429, headers=headers)


async def truncated(request: web.BaseRequest, body: dict[str, object]) -> web.StreamResponse:
    """Announce the whole `body` in Content-Length, send half of it, then close."""
    payload = json.dumps(body).encode()
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    response.content_length = len(payload)
    await response.prepare(request)
    await response.write(payload[: len(payload) // 2])
    # close() flushes what was written before the FIN, so the client gets a short body.
    drop_connection(request)
    return response


def simple_fault_response(fault: Fault, redirect_to: str) -> web.Response:
    """The plain responses: SERVER_ERROR, HTML_502 and REDIRECT."""
    if fault is Fault.SERVER_ERROR:
        return web.json_response(error_body(INTERNAL_FAILURE), status=500)
    if fault is Fault.HTML_502:
        return web.Response(status=502, text=HTML_502_BODY, content_type="text/html")
    if fault is Fault.REDIRECT:
        return web.Response(status=307, headers={"Location": redirect_to})
    raise ValueError(f"{fault} is not a plain response")
