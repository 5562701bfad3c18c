"""The transport seam: what the client needs to send one request, whatever sends it.

``RyzeClient(transport=...)`` takes any object with these two methods; the default is the
aiohttp transport (``_aiohttp``, the only client-side module that imports aiohttp), and
``MockTransport`` (``_mock``, exported by ``ryze_async.testing``) answers from a function.

A transport's one duty beyond sending is to sort every failure into one of two kinds:
``ConnectionFailedError`` when the request provably never reached the server (the client may
send it again), ``OutcomeUnknownError`` for anything after that (never sent again).

A transport that knows when a request leaves (its connection made, its bytes being written)
calls the function in ``LEAVING`` then, once per request: the quota records its slot's
time as that moment (issue 18). The retry boundary sets it for each call with a quota slot; a
transport that never calls it (a user's own) leaves the slot at the last check before ``send``.
A transport of this package that calls it before every request's first byte, always, says so
with a class attribute ``tells_leaving = True``: a call cancelled before it is then provably not
sent (its slot given back, its ``on_not_sent`` awaited); without it (a user's own transport) a
cancelled call may have been sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .._public import public

if TYPE_CHECKING:
    from .._config import Secret

__all__ = ["LEAVING", "RawResponse", "Transport"]

#: What to call the moment the current task's request leaves (None: nobody asks).
LEAVING: ContextVar[Callable[[], None] | None] = ContextVar("ryze_leaving", default=None)


@public
@dataclass(frozen=True, slots=True)
class RawResponse:
    """What came back, before any interpretation."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    #: Kept out of repr: a server may echo the token, and a traceback's locals show reprs.
    body: bytes = field(repr=False)


@public
class Transport(Protocol):
    """Sends one POST per ``send`` call; never retries by itself."""

    async def send(
        self, url: str, headers: Mapping[str, str | Secret], body: bytes | Sequence[bytes]
    ) -> RawResponse:
        """POST ``body`` (bytes, or parts sent in order) to ``url`` once.

        A ``Secret`` header value is revealed only for the wire. Raises
        ``ConnectionFailedError`` (never reached the server) or ``OutcomeUnknownError``;
        ``ClientClosedError`` after ``aclose()``.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; nothing is sent afterwards. Idempotent."""
        ...
