"""A client's interactive reserve on the shared Redis quota: announced, kept alive, withdrawn.

Bulk admissions of every process leave free the largest reserve that a live client of the token
announced (issue 11: the stricter setting wins, as for the limit). An announcement lapses
`RESERVE_TTL_MS` after it was last renewed, so a process that died without closing stops holding
slots back within that time; a live client renews it every third of it, from its construction
in a running loop (else its ``async with`` or its first call) until ``aclose``, which withdraws it
at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ..._exceptions import QuotaBackendError

__all__ = ["RESERVE_TTL_MS", "ReserveKeeper"]

#: How long an announcement holds without renewal (milliseconds of Redis time).
RESERVE_TTL_MS = 30_000

_log = logging.getLogger("ryze_async.quota")
Announce = Callable[[int], Coroutine[Any, Any, Any]]


class ReserveKeeper:
    """Keeps `reserve` announced through `announce` (the ANNOUNCE script) while running."""

    def __init__(self, reserve: int, announce: Announce) -> None:
        self._reserve = reserve
        self._announce = announce
        self._first: asyncio.Task[Any] | None = None  # the first announcement, in flight or done
        self._task: asyncio.Task[None] | None = None

    def start_soon(self) -> None:
        """Send the first announcement now, in the background (a running loop is needed)."""
        if self._reserve:
            self._first_announcement()

    def _first_announcement(self) -> asyncio.Task[Any]:
        if self._first is None:
            self._first = asyncio.get_running_loop().create_task(self._announce(self._reserve))
            # Its failure is raised by `start`; retrieved here too, so an unawaited one is quiet.
            self._first.add_done_callback(_retrieve)
        return self._first

    @property
    def started(self) -> bool:
        """Nothing for `start` to do: no reserve, or announced and renewed in the background."""
        return self._reserve == 0 or self._task is not None

    async def start(self) -> None:
        """Announce now, or wait for the announcement `start_soon` sent (a failure fails
        closed: QuotaBackendError, and the next start tries again), then renew in the
        background. Idempotent; nothing to do without a reserve."""
        if self._reserve == 0 or self._task is not None:
            return
        first = self._first_announcement()
        try:
            # Shielded: a caller cancelled while waiting leaves the announcement to others.
            await asyncio.shield(first)
        except QuotaBackendError:
            if self._first is first:
                self._first = None
            raise
        if self._task is None:  # concurrent starters: one renewer
            self._task = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RESERVE_TTL_MS / 3000)
            try:
                await self._announce(self._reserve)
            except QuotaBackendError as exc:  # the next admission fails closed on its own
                _log.warning("could not renew the interactive reserve: %s", exc)

    async def stop(self) -> None:
        """Stop renewing and withdraw the announcement (best effort: it lapses anyway)."""
        task, self._task = self._task, None
        first, self._first = self._first, None
        started = [t for t in (first, task) if t is not None]
        if not started:
            return
        for pending in started:
            pending.cancel()
        # wait(), not a suppressed await: a cancel of our caller landing here is theirs to get.
        await asyncio.wait(started)
        if task is not None and not task.cancelled():
            task.result()  # it ended on its own: an unexpected failure surfaces, as before
        with contextlib.suppress(QuotaBackendError):
            # Also when the first announcement was cancelled in flight: it may have landed.
            await self._announce(0)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
