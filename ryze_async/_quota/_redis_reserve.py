"""A client's interactive reserve on the shared Redis quota: announced, kept alive, withdrawn.

Bulk admissions of every process leave free the largest reserve that a live client of the token
announced (issue 11: the stricter setting wins, as for the limit). An announcement lapses
`RESERVE_TTL_MS` after it was last renewed, so a process that died without closing stops holding
slots back within that time; a live client renews it every third of it, from its ``async with``
(or its first call) until ``aclose``, which withdraws it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .._exceptions import QuotaBackendError

__all__ = ["RESERVE_TTL_MS", "ReserveKeeper"]

#: How long an announcement holds without renewal (milliseconds of Redis time).
RESERVE_TTL_MS = 30_000

_log = logging.getLogger("ryze_async.quota")
Announce = Callable[[int], Awaitable[Any]]


class ReserveKeeper:
    """Keeps `reserve` announced through `announce` (the ANNOUNCE script) while running."""

    def __init__(self, reserve: int, announce: Announce) -> None:
        self._reserve = reserve
        self._announce = announce
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        """Announce now (a failure fails closed: QuotaBackendError), then renew in the
        background. Idempotent; nothing to do without a reserve."""
        if self._reserve == 0 or self._task is not None:
            return
        await self._announce(self._reserve)
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
        if task is None:
            return
        task.cancel()
        # wait(), not a suppressed await: a cancel of our caller landing here is theirs to get.
        await asyncio.wait([task])
        if not task.cancelled():
            task.result()  # it ended on its own: an unexpected failure surfaces, as before
        with contextlib.suppress(QuotaBackendError):
            await self._announce(0)
