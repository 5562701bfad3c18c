"""Waits that ``aclose()`` ends: a call waiting for quota, a 429 reset or a retry backoff fails
with ``ClientClosedError`` the moment its client closes, having sent nothing.

Only waits are interrupted, never a send or a caller's hook: a request on the wire has its
outcome decided by the transport, and a hook (a journal write, say) must run to its end.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import TypeVar

from ._exceptions import ClientClosedError

__all__ = ["CloseGuard"]

T = TypeVar("T")


def _closed_error() -> ClientClosedError:
    return ClientClosedError(
        "this RyzeClient was closed while the call waited to be sent; nothing was sent"
    )


class CloseGuard:
    """Tracks the tasks waiting on behalf of one client, and cancels them when it closes."""

    __slots__ = ("_cancelled", "_waiting", "closed")

    def __init__(self) -> None:
        self.closed = False
        self._waiting: set[asyncio.Task[object]] = set()
        self._cancelled: set[asyncio.Task[object]] = set()  # cancelled by close(), not by others

    def check(self) -> None:
        if self.closed:
            raise _closed_error()

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``; raise ``ClientClosedError`` if the client is or gets closed."""
        if self.closed:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never started: nothing to unwind, no "never awaited" warning
            raise _closed_error()
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - a coroutine awaited outside a task
            return await awaitable
        self._waiting.add(task)
        try:
            result = await awaitable
        except asyncio.CancelledError:
            # Ours alone: a cancel from outside as well (cancelling() still > 0) stays a cancel.
            if task in self._cancelled and task.uncancel() == 0:
                raise _closed_error() from None
            raise
        finally:
            self._waiting.discard(task)
            self._cancelled.discard(task)
        self.check()
        return result

    async def sleep(self, delay: float) -> None:
        await self.wait(asyncio.sleep(delay))

    def close(self) -> None:
        self.closed = True
        for task in self._waiting:
            if task not in self._cancelled:
                self._cancelled.add(task)
                task.cancel()
