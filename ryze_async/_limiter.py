"""Client-side limiter for RyzeAPI's per-token quota (100 requests per 60 s, shared by the token).

The server's window may be fixed or sliding and at any phase, so `QuotaLimiter` keeps a
sliding-window log over ``period + margin``: no window of ``period`` seconds, wherever it starts,
ever holds more than ``limit`` admissions, even when requests reach the server up to ``margin``
seconds after they were admitted. A burst of ``limit`` goes out at once; after that each slot is
reused ``period + margin`` after its previous use (1,000 calls: 549 s against an ideal 540 s).

Why not aiolimiter: ``AsyncLimiter(100, 60)`` is a leaky bucket whose burst equals its rate, so it
admits 100 at once and drips 99 more within the same 60 s (199 in one window: 429s).
``AsyncLimiter(1, 0.6)`` never bursts, takes ~11% longer than the quota allows, and with no
margin still draws 429s when requests arrive 0-50 ms late. Neither can take server feedback.
pyrate-limiter (checked against its 4.x source) was weighed too: its in-memory bucket is a sliding
log, but it reads its own integer-millisecond monotonic clock (not the loop's, so no virtual-time
tests), runs a background leak thread, and offers no way to feed X-RateLimit-Remaining/Reset or a
429 back into its schedule.

Sharing: `shared_limiter` gives every client of one event loop that uses the same token the same
limiter. Clients in other event loops, threads or processes do not share it (each would spend the
whole quota); a Redis-backed limiter for that case is future work.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import weakref
from collections import deque

__all__ = ["QuotaLimiter", "default_margin", "shared_limiter"]

_log = logging.getLogger("ryze_async")


def default_margin(period: float) -> float:
    """Safety margin for `period`: 1 s per 60 s, at least 0.1 s (loopback jitter in tests)."""
    return max(0.1, period / 60)


def _check_config(limit: int, period: float, margin: float | None) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an integer >= 1, not {limit!r}")
    if not (math.isfinite(period) and period > 0):
        raise ValueError(f"period must be a finite number of seconds > 0, not {period!r}")
    if margin is not None and not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number of seconds >= 0, not {margin!r}")


class QuotaLimiter:
    """At most `limit` admissions in any window of `period` seconds, waiters served FIFO.

    Time is the running loop's clock (`loop.time()`) and waits are `asyncio.sleep`, so a
    virtual-time loop drives it exactly. An instance serves one event loop at a time.
    """

    __slots__ = ("__weakref__", "_hold", "_limit", "_margin", "_period", "_queue", "_stamps")

    def __init__(self, limit: int, period: float, *, margin: float | None = None) -> None:
        _check_config(limit, period, margin)
        self._limit = limit
        self._period = float(period)
        self._margin = default_margin(period) if margin is None else float(margin)
        # Admission times, oldest first. Invariant: at most `limit` entries (the limit only ever
        # goes down, so older entries can never matter again).
        self._stamps: deque[float] = deque()
        self._hold = -math.inf  # nobody is admitted before this loop time
        # One future per waiting acquire(), FIFO; the head is the one sleeping towards its slot.
        self._queue: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def period(self) -> float:
        return self._period

    @property
    def margin(self) -> float:
        return self._margin

    def __repr__(self) -> str:
        return (
            f"QuotaLimiter(limit={self._limit}, period={self._period}, margin={self._margin}, "
            f"waiting={len(self._queue)})"
        )

    def _delay(self, now: float) -> float:
        """Seconds from `now` until one more admission is allowed (<= 0: admit now)."""
        stamps = self._stamps
        window = self._period + self._margin
        # Same expression as the wait below, so pruning and waiting agree to the last bit.
        while stamps and stamps[0] + window <= now:
            stamps.popleft()
        wait = stamps[0] + window - now if len(stamps) >= self._limit else 0.0
        return max(wait, self._hold - now)

    async def acquire(self) -> None:
        """Wait for a slot (first come, first served), take it, and return.

        Cancelling a waiter gives its place to the next one and takes no slot.
        """
        loop = asyncio.get_running_loop()
        if not self._queue:
            now = loop.time()
            if self._delay(now) <= 0:  # fast path: nobody waiting, quota left
                self._stamps.append(now)
                return
        turn: asyncio.Future[None] = loop.create_future()
        self._queue.append(turn)
        try:
            if self._queue[0] is not turn:
                await turn  # set when everyone ahead has been admitted or has left
            while True:
                now = loop.time()
                delay = self._delay(now)
                if delay <= 0:
                    self._stamps.append(now)
                    return
                # Every change made while we sleep (lower limit, longer period, later hold)
                # only moves the slot later, never earlier, so waking and re-checking suffices.
                await asyncio.sleep(delay)
        finally:
            was_head = self._queue[0] is turn
            self._queue.remove(turn)
            if was_head and self._queue and not self._queue[0].done():
                self._queue[0].set_result(None)

    def next_delay(self) -> float:
        """Seconds until the head of the queue could be admitted, from now (for logs and tests)."""
        return max(0.0, self._delay(asyncio.get_running_loop().time()))

    def hold_until(self, delay: float) -> None:
        """Admit nobody for `delay` seconds from now (e.g. after a 429); never shortens a hold."""
        if math.isnan(delay):
            raise ValueError("delay must be a number of seconds, not NaN")
        now = asyncio.get_running_loop().time()
        self._hold = max(self._hold, now + max(0.0, delay))

    def observe(
        self, *, limit: int | None, remaining: int | None, reset_after: float | None
    ) -> None:
        """Take in a response's X-RateLimit headers (None: header absent or unreadable).

        `reset_after` is seconds from now until the server's counter resets, already converted
        with the response's Date header.
        """
        if limit is not None and 1 <= limit < self._limit:
            _log.warning(
                "RyzeAPI reports a quota of %d requests per window, below the configured %d: "
                "using %d",
                limit,
                self._limit,
                limit,
            )
            self._lower_limit(limit)
        if remaining is None or remaining > 0 or reset_after is None or math.isnan(reset_after):
            return
        now = asyncio.get_running_loop().time()
        self._delay(now)  # prune, so len(stamps) counts the admissions still in our window
        if len(self._stamps) >= self._limit:
            # Our own log is full: our next admission is at least period + margin after the
            # oldest of our last `limit` admissions, later than any server window (only `period`
            # long) that counted them can reset. A sliding server may also report a pessimistic
            # reset (when its whole window clears), which would waste quota if obeyed.
            return
        # The server counts requests we did not make (another client shares the token) or counts
        # differently: trust its reset. Clamped against garbage headers and clock mismatch.
        reset_after = min(max(reset_after, 0.0), 2 * self._period + 5)
        self._hold = max(self._hold, now + reset_after)

    def tighten(self, limit: int, period: float, margin: float | None = None) -> None:
        """Adopt the stricter of two configurations (two clients on one token disagree).

        Keeps the lower limit, the longer period and the larger margin (`margin=None` stands for
        the default margin of the resulting period).
        """
        _check_config(limit, period, margin)
        if limit < self._limit:
            self._lower_limit(limit)
        self._period = max(self._period, float(period))
        wanted = default_margin(self._period) if margin is None else float(margin)
        self._margin = max(self._margin, wanted)

    def _lower_limit(self, limit: int) -> None:
        self._limit = limit
        while len(self._stamps) > limit:
            self._stamps.popleft()


# Per event loop (asyncio objects belong to one loop; weak so closed loops, e.g. pytest's
# per-test loops, are not kept alive), then per token digest: the raw token is never stored.
# A limiter holds no reference to its loop while nobody waits, so the weak key can die.
_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, QuotaLimiter]] = (
    weakref.WeakKeyDictionary()
)


def shared_limiter(token: str, limit: int, period: float, margin: float | None) -> QuotaLimiter:
    """The limiter every client of the running loop shares for `token`.

    The first call creates it; a later call with another configuration tightens it (lower limit,
    longer period, larger margin) and returns the same object. Clients in other event loops,
    threads or processes get their own limiter and do not share the quota's bookkeeping.
    Must be called with the loop running (e.g. on a client's first request).
    """
    loop = asyncio.get_running_loop()
    _check_config(limit, period, margin)
    key = hashlib.sha256(token.encode("utf-8")).hexdigest()
    per_loop = _registry.get(loop)
    if per_loop is None:
        per_loop = _registry[loop] = {}
    limiter = per_loop.get(key)
    if limiter is None:
        limiter = per_loop[key] = QuotaLimiter(limit, period, margin=margin)
    else:
        limiter.tighten(limit, period, margin)
    return limiter
