"""The campaign's outcome iterator: dialing proceeds only while a consumer is attached.

Outcomes pass to the consumer through a small bounded hand-off, so a consumer that stops
pulling holds the workers (each blocks on handing over its outcome and takes no new number).
Leaving the loop in any way detaches the consumer and stops the run: ``aclose()`` or the
campaign's ``async with`` explicitly, and a ``break``, an exception in the loop body, a
cancelled task or a dropped iterator through a finalizer that runs when the iterator goes away.
An async generator would not do: it is closed only by ``aclose()`` or, later, by the loop's
asyncgen hooks, and its runner task goes on dialing meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import weakref
from collections.abc import Callable

from .outcomes import CampaignOutcome, CampaignSummary

__all__ = ["Handoff", "Outcomes"]

HANDOFF_SIZE = 1


class Handoff:
    """A bounded queue whose producers are released, and their items dropped, once closed."""

    def __init__(self, size: int = HANDOFF_SIZE) -> None:
        self._items: collections.deque[CampaignOutcome] = collections.deque()
        self._size = size
        self._room = asyncio.Event()
        self._ready = asyncio.Event()
        self.closed = False  # the consumer left: outcomes go only to the journal
        self.ended = False  # the run is over: nothing more will be put

    async def put(self, item: CampaignOutcome) -> None:
        while len(self._items) >= self._size and not self.closed:
            self._room.clear()
            await self._room.wait()
        if not self.closed:
            self._items.append(item)
            self._ready.set()

    async def get(self) -> CampaignOutcome | None:
        """The next outcome, or None once the run ended and everything was taken."""
        while not self._items:
            if self.ended or self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        self._room.set()
        return self._items.popleft()

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._room.set()
        self._ready.set()

    def end(self) -> None:
        self.ended = True
        self._ready.set()


class Outcomes:
    """``async for outcome in campaign``: see the module docstring."""

    def __init__(self, handoff: Handoff, runner: asyncio.Task[CampaignSummary],
                 leave: Callable[[], None]) -> None:
        self._handoff = handoff
        self._runner = runner
        self._reported_before = False
        loop = runner.get_loop()
        self._finalizer = weakref.finalize(self, _leave_soon, loop, threading.get_ident(), leave)

    def __aiter__(self) -> Outcomes:
        return self

    async def __anext__(self) -> CampaignOutcome:
        try:
            item = await self._handoff.get()
        except BaseException:  # cancelled while waiting: the consumer is gone
            self._finalizer()
            raise
        if item is not None:
            return item
        self._finalizer()  # no-op once the run ended; stops it if we were closed meanwhile
        runner = self._runner
        if not self._reported_before and runner.done() and not runner.cancelled():
            self._reported_before = True
            if (exc := runner.exception()) is not None:
                raise exc  # the run's failure, once; then the iteration is over
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop the run (calls already sent may finish) and wait until it is recorded."""
        self._finalizer()
        await asyncio.wait({self._runner})


def _leave_soon(loop: asyncio.AbstractEventLoop, thread: int, leave: Callable[[], None]) -> None:
    # Runs where the iterator was dropped: usually inside the loop's thread (call at once, so
    # no worker takes a new number meanwhile); a collection elsewhere is handed to the loop.
    if threading.get_ident() == thread:
        leave()
    elif not loop.is_closed():
        loop.call_soon_threadsafe(leave)
