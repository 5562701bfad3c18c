"""The dispatcher's feeder: the input streamed into the journal, pending rows read back.

One ingest task streams the input into the journal (``_ingest.py``); one feeder task reads
pending rows back in input order (ids above its cursor), and rows handed back (a retry, held
rows whose window opened: ``_gate.py``), into a bounded queue the dispatcher's workers take
them from (``_dispatch.py``). It ends when nothing is left to hand out, nothing is
outstanding, nothing is held for a later window and no other worker of a shared store holds a
row.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from .ingest import ingest_input
from .inputs import NumberSource
from .journal import JournalStore
from .outcomes import CampaignOutcome
from .persons import number_normalizer
from .rules.gate import Gate
from .settings import CampaignClient, Settings
from .stop import StopState

__all__ = ["Feeder", "Row"]

_log = logging.getLogger("ryze_async.campaign")
Row = tuple[int, str, int]
#: Seconds between looks for numbers another worker's expired lease gave back.
_SHARED_POLL = 1.0
#: On a shared journal, seconds between looks at the held rows while waiting for a window.
_SHARED_RECHECK = 60.0


class Feeder:
    """Hands pending rows to the workers through :attr:`queue`; see the module docstring."""

    def __init__(
        self, client: CampaignClient, journal: JournalStore, source: NumberSource | None,
        settings: Settings, *, gate: Gate, stop: StopState,
        emit: Callable[[CampaignOutcome], Awaitable[None]],
    ) -> None:
        self._client = client
        self._journal = journal
        self._source = source
        self._s = settings
        self._gate = gate
        self._stop = stop
        self._emit = emit
        self.wake = asyncio.Event()
        self._ready = asyncio.Event()  # set once pending rows may be dispatched
        self.queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=settings.concurrency)
        self.retry: collections.deque[Row] = collections.deque()
        self.outstanding = 0  # rows handed to the queue and not yet finished by a worker
        self._ingest_done = False
        self._said = ""  # the last "nothing can be called until ..." said
        #: While nothing can be called before a window opens: (when, how many wait for one).
        self.window: tuple[datetime, int] | None = None

    def row_done(self) -> None:
        """A worker finished a row it took: one less outstanding, look again."""
        self.outstanding -= 1
        self.wake.set()

    async def ingest(self) -> None:
        try:
            if self._source is None:
                self._ready.set()
                return
            # The client's own reading of numbers (a stub client has none: country codes only).
            normalize = number_normalizer(getattr(self._client, "default_region", None),
                                          getattr(self._client, "number_check", "valid"))
            await ingest_input(self._journal, self._source, self._s.ingest_batch,
                               ready=self._ready, wake=self.wake, emit=self._emit,
                               normalize=normalize)
        finally:
            self._ingest_done = True
            self.wake.set()

    async def feed(self) -> None:
        await self._ready.wait()
        await self._gate.start()
        cursor = 0
        shared = self._journal.shared
        while True:
            # Cleared before looking, so a change made while we look wakes the wait below.
            self.wake.clear()
            page = self._page(shared)
            if not self.retry and page and self._gate.due_now():
                self.retry.extend(await self._gate.due(page))
            if self.retry:
                self.outstanding += 1
                await self.queue.put(self.retry.popleft())
                continue
            ingest_done = self._ingest_done
            rows = await self._journal.pending_after(cursor, page) if page else []
            for row in rows:
                self.outstanding += 1
                await self.queue.put(row)
            if rows:
                cursor = rows[-1][0]
                continue
            if ingest_done and self.outstanding == 0 and not self.retry:
                if not await self._idle(shared):
                    return
                continue
            await self._wait(self._gate.delay())

    async def _idle(self, shared: bool) -> bool:
        """Nothing to hand out, nothing outstanding: wait for the next calling window, or for
        rows another worker holds; False when the run is over (or stops outside the windows)."""
        opens = await self._gate.next_open()
        if opens is not None and opens > self._gate.now():
            return await self._wait_for_window(shared)
        if opens is not None:  # due now: read back at the top (or shortly, if being claimed)
            await self._wait(self._gate.delay())
            return True
        if not shared or not await self._journal.held_elsewhere():
            return False
        # Other workers hold rows: if one died, its claims come back to pending when its
        # lease ends (the database's clock), so wait and look again.
        await self._wait(_SHARED_POLL)
        return True

    async def _wait_for_window(self, shared: bool) -> bool:
        """Nothing can be called before the first held row's window: wait for it (True), or
        stop the run if asked to exit outside the windows (False)."""
        until, held, message = await self._gate.waiting()
        if self._s.exit_outside_window:
            self._stop.request("outside_window", f"{message}: stopped, the rest left pending; "
                               "run the same command again then to resume")
            return False
        if message != self._said:
            self._said = message
            _log.warning("%s: waiting (--exit-outside-window to stop instead)", message,
                         extra={"each_text": True})
        delay = self._gate.delay()
        if shared and delay is not None:
            # Other workers hold rows too (an earlier window; a dead worker's claims that
            # come back): look again now and then.
            delay = min(delay, _SHARED_RECHECK)
        self.window = (until, held)
        try:
            await self._wait(delay)
        finally:
            self.window = None
        return True

    async def _wait(self, seconds: float | None) -> None:
        """Until something changes (``wake``) or ``seconds`` pass (None: no time limit)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)

    def _page(self, shared: bool) -> int:
        """How many rows to ask for: a shared store's page is a claim other workers cannot
        take, so it is what this worker can start soon (the queue plus the workers)."""
        if not shared:
            return max(100, self._s.concurrency * 4)
        return max(0, 2 * self._s.concurrency - self.outstanding)
