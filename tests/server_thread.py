"""A ``FakeRyzeServer`` on an event loop of its own thread, for end-to-end quota tests.

In the test's own loop, the server reads a request only when the clients' loop gets to it: a turn
the clients spend on TLS handshakes or cluster discovery (over 100 ms on a loaded CI host) then
shows in the server's record as delivery time, more than the tests' 0.1 s margin allows (CI run
14 drew a 429 that way on the TLS cluster; the gaps it records between uses of one slot are
period + margin otherwise). On its own thread the server reads a request when its bytes arrive,
so its record judges the quota, not the test's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from ryze_async.testing import FakeRyzeServer, RecordedRequest

__all__ = ["ServerThread"]

_T = TypeVar("_T")
BOUND = 30.0  # seconds: starting, stopping or waiting on the server never takes longer


class ServerThread:
    """``async with ServerThread(**settings) as server``: the settings are FakeRyzeServer's; the
    record (``requests``, ``placed_calls``) is read from the test's thread."""

    def __init__(self, **settings: Any) -> None:
        self._server = FakeRyzeServer(**settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-ryze-server",
                                        daemon=True)

    async def _there(self, coro: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), BOUND)

    async def __aenter__(self) -> ServerThread:
        self._thread.start()
        await self._there(self._server.start())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            await self._there(self._server.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(BOUND)
            self._loop.close()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self._server.requests)

    @property
    def placed_calls(self) -> list[RecordedRequest]:
        return list(self._server.placed_calls)

    async def wait_for_requests(self, count: int = 1) -> None:
        await self._there(self._server.wait_for_requests(count, timeout=BOUND))
