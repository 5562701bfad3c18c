"""One call's hooks into the journal: the claim before the first byte, the way back to pending."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal

from .journal import ClaimLostError, JournalStore
from .rules import Call, Verdict
from .settings import StoppedError
from .stop import StopState

__all__ = ["Attempt", "Phase"]

Phase = Literal["idle", "waiting", "sending"]


class Attempt:
    """One row's call hooks: ``sending`` is committed before the first byte; a request proven
    not sent puts the row back to pending before the client waits to retry."""

    def __init__(self, journal: JournalStore, stop: StopState, row_id: int,
                 phase: Callable[[Phase], None], *, sender: str | None = None,
                 check: Callable[[], Awaitable[Verdict]] | None = None) -> None:
        self._journal = journal
        self._stop = stop
        self._row_id = row_id
        self._phase = phase
        self._sender = sender
        #: From the first mark on, the call may have been sent (until proven otherwise).
        self.marked = False
        self._check = check
        #: Why the operator's rules refused the call at its first byte (not sent): skipped
        #: (opted out meanwhile, past ``not_after``) or held (its window closed meanwhile).
        self.refused: Verdict | None = None

    async def before_send(self) -> None:
        if self._stop.stopping:
            raise StoppedError
        if self._check is not None:
            # The number was admitted when claimed, but the quota (or a retry) may have made it
            # wait since: the window may have closed, the opt-out list gained it, the deadline
            # passed. The rules hold at the instant of sending.
            verdict = await self._check()
            if not isinstance(verdict, Call):
                self.refused = verdict
                raise StoppedError
        self._phase("sending")
        self.marked = True  # from here the mark may commit: treat the call as possibly sent
        try:
            await self._journal.mark_sending(self._row_id, sender=self._sender)
        except ClaimLostError:
            # A shared store refused the mark: another worker holds the row now (our lease
            # ran out). Nothing was sent and nothing may be: skip the row, keep dispatching.
            self.marked = False
            raise StoppedError from None
        except asyncio.CancelledError:
            # Aborted (or cancelled) before the first byte: provably not sent. The mark may
            # still commit: the row goes back to pending right after it, not to unknown.
            self.marked = False
            self._journal.record(self._row_id, "pending", error="stopped before sending")
            raise

    async def on_not_sent(self) -> None:
        # Refused or never sent, and the client is about to wait: a crash or a stop during
        # that wait must leave the number pending (to call), not unknown (never called).
        if not self.marked:
            return
        self.marked = False
        self._phase("waiting")
        self._journal.record(self._row_id, "pending", error="not sent yet: waiting to retry")
        await self._journal.flush()
        if self._stop.stopping:
            raise StoppedError
