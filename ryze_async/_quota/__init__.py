"""The quota seam: what the client needs from whatever keeps a token's requests under its quota.

Two backends implement ``QuotaBackend``: the in-process ``QuotaLimiter`` (``local``), shared by
every client of one event loop on the same server and token (``shared_limiter``), and
``RedisQuota`` (``redis``, extra ``redis``), shared by every process and host on the token that
uses the same Redis; ``choose`` picks one from the client's ``quota_url`` / ``RYZE_QUOTA_URL``.

Times are the running loop's clock (``loop.time()``), so a virtual-time loop drives a backend
exactly. The client's use of a backend, per call:

1. ``try_acquire()``; when it gives None, ``acquire()`` waits for a slot (by lane, then first
   come, first served). Either returns the slot's loop time, handed back to ``observe`` and
   ``release``. A call's lane (``"interactive"``, the default, or ``"bulk"``) and deadline are
   passed only when they are not the defaults, so a backend that knows no lanes serves the
   default lane unchanged. A backend honours lanes like the local limiter: interactive
   waiters before bulk ones, and bulk admitted only while fewer than ``limit - reserve``
   admissions are in the window (the reserve is the larger any user of the token asked for).
   The Redis backend does both across processes: its log places an interactive call in the
   first slot with room, ahead of every process's bulk reservations not sent yet (they move
   back), and bulk leaves the reserve free.
2. Right before each attempt goes to the transport (after ``before_send``): ``late(slot)``, a
   check on this process's clock (no round trip); when the attempt is later than its slot by
   more than half the margin (a stalled loop, a slow hook), ``readmit(slot)`` moves the slot
   to now if one fits, or gives it back (None) and the call waits again with ``acquire``,
   sending nothing.
3. ``sent(slot)`` when the request's bytes are written, its connection made (the aiohttp
   transport tells, through ``_transports.LEAVING``): a request that leaves more than a tenth
   of the margin after its slot (connections made one after another for hundreds of calls, a
   slow connect) has its slot's time moved to now, only ever later. So a slot's time is when
   its request leaves: the next use of the slot waits a period + margin after that, and the
   margin only covers the way to the server.
4. ``release(slot)`` when the slot was never used: nothing reached the server (``before_send``
   raised, the client closed, every attempt failed to connect).
5. ``observe(...)`` with each answer's ``X-RateLimit-*`` feedback; ``hold_until(delay)`` after a
   429: nobody sends before its reset.
6. ``settle()`` once the call's attempt is over, answered or not: a fresh backend admits its
   first request alone and learns the server's remaining quota from its answer before the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from .._hooks import CallKind, HookDispatch, QuotaWaitEnded, QuotaWaitStarted
from .._public import public
from .local import Lane, QuotaLimiter
from .shared import shared_limiter

__all__ = ["Lane", "QuotaBackend", "QuotaLimiter", "observed_wait", "shared_limiter"]


@public
class QuotaBackend(Protocol):
    """A token's quota as the client sees it."""

    def try_acquire(self, *, lane: Lane = "interactive") -> float | None:
        """Take a slot if one is free right now and nobody of ``lane`` or a higher lane waits
        ahead: its loop time, or None."""
        ...

    async def acquire(self, *, lane: Lane = "interactive", deadline: float | None = None) -> float:
        """Wait for a slot and take it; its loop time.

        ``deadline`` (a loop time): raise ``QuotaTimeoutError`` (nothing taken) at once when
        the backend already knows the slot comes later (the queue ahead and the log tell),
        else when the deadline passes before admission.
        """
        ...

    def release(self, slot: float) -> None:
        """Give back a slot ``acquire`` returned whose request never reached the server."""
        ...

    def late(self, slot: float) -> bool:
        """Whether a request leaving now is later than ``slot`` by more than half the margin.
        Answered from this process's clock: no round trip."""
        ...

    async def readmit(self, slot: float, *, lane: Lane = "interactive") -> float | None:
        """The slot a request leaving now goes with: ``slot`` when it is on time, a slot of now
        in its place (never earlier) when one fits, else None: ``slot`` was given back and the
        caller acquires again, having sent nothing."""
        ...

    def sent(self, slot: float) -> float:
        """The request of ``slot`` leaves now: its slot's time becomes now when it is later
        than the slot by more than a tenth of the margin (only ever later); the slot it goes
        with. Never waits: a backend with a round trip to make does it in the background."""
        ...

    def observe(
        self, *, limit: int | None, remaining: int | None, reset_after: float | None,
        admitted_at: float | None = None,
    ) -> None:
        """Take in an answer's ``X-RateLimit-*`` fields (None: absent); ``reset_after`` in
        seconds from now, ``admitted_at`` the slot of the request that was answered."""
        ...

    def hold_until(self, delay: float) -> None:
        """Admit nobody for ``delay`` seconds from now (a 429's reset); never shortens a hold."""
        ...

    def settle(self) -> None:
        """The attempt of the slot taken last is over (answered or not). Idempotent."""
        ...


async def observed_wait(
    wait: Callable[[Awaitable[float]], Awaitable[float]], acquiring: Callable[[], Awaitable[float]],
    hooks: HookDispatch, kind: CallKind, instance: str,
) -> float:
    """``wait(acquiring())``, reported to ``hooks`` when it begins and when it ends."""
    hooks.emit("on_quota_wait_started", QuotaWaitStarted(kind, instance))
    loop = asyncio.get_running_loop()
    began = loop.time()
    admitted = False
    try:
        slot = await wait(acquiring())
        admitted = True
        return slot
    finally:
        hooks.emit("on_quota_wait_ended", QuotaWaitEnded(
            kind, instance, loop.time() - began, admitted))
