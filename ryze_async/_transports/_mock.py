"""``MockTransport``: a transport for tests of code that uses ``RyzeClient``, with no network.

    def handler(request: MockRequest) -> MockResponse:
        return MockResponse(200, {"success": True, "message": "Audio call placed"})

    client = RyzeClient(token="t", instance="i", transport=MockTransport(handler))

The handler (a function, or a coroutine function) gets each request and returns the answer:
a ``MockResponse`` (its ``json`` is encoded for you, or give ``body`` bytes), or it raises to
simulate a failure: ``MockTransport.not_sent()`` (a ``ConnectionFailedError``: the request
never reached the server, so the client may send it again) or ``MockTransport.unknown()`` (an
``OutcomeUnknownError``: it may have been processed, never sent again). ``requests`` records
every request in order, whatever the handler did with it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._exceptions import ClientClosedError, ConnectionFailedError, OutcomeUnknownError
from . import RawResponse

if TYPE_CHECKING:
    from .._config import Secret

__all__ = ["MockRequest", "MockResponse", "MockTransport"]


@dataclass(frozen=True, slots=True)
class MockRequest:
    """One request as the client sent it; the token header stays redacted in its repr."""

    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    def json(self) -> Any:
        """The body, decoded."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class MockResponse:
    """An answer: ``json`` (encoded for you) or raw ``body`` bytes."""

    status: int = 200
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def raw(self) -> RawResponse:
        headers = dict(self.headers)
        body = self.body
        if body is None:
            body = b"" if self.json is None else json.dumps(self.json).encode()
            headers.setdefault("Content-Type", "application/json")
        return RawResponse(self.status, headers, body)


Handler = Callable[[MockRequest], "MockResponse | Awaitable[MockResponse]"]


class MockTransport:
    """Answers every request with ``handler(request)``; records the requests in ``requests``."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[MockRequest] = []
        self.closed = False

    @staticmethod
    def not_sent(message: str = "simulated: connection refused") -> ConnectionFailedError:
        """The error a handler raises for a request that never reached the server."""
        return ConnectionFailedError(f"{message}; nothing was sent")

    @staticmethod
    def unknown(message: str = "simulated: connection lost") -> OutcomeUnknownError:
        """The error a handler raises for a request the server may have processed."""
        return OutcomeUnknownError(f"{message}; the call may have been placed")

    async def send(
        self, url: str, headers: Mapping[str, str | Secret], body: bytes | Sequence[bytes]
    ) -> RawResponse:
        if self.closed:
            raise ClientClosedError("this RyzeClient is closed; nothing was sent")
        request = MockRequest(
            url,
            {name: value.reveal() if not isinstance(value, str) else value
             for name, value in headers.items()},
            body if isinstance(body, bytes) else b"".join(body),
        )
        self.requests.append(request)
        answer = self._handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer.raw()

    async def aclose(self) -> None:
        self.closed = True
