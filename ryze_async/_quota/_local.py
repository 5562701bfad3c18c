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

Sharing (``_shared``): `shared_limiter` gives every client of one event loop that uses the same
token on the same server (base URL origin) the same limiter. Clients in other event loops,
threads or processes do not share it (each would spend the whole quota); a Redis-backed
``QuotaBackend`` for that case is future work. The server's X-RateLimit-Remaining still keeps
them apart: an answer that says fewer remain than our own log thinks caps our admissions until
its reset.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
from collections import deque

from .._checks import check_quota as check_config

__all__ = ["QuotaLimiter", "check_config", "default_margin", "probe_wait"]

_log = logging.getLogger("ryze_async")


def default_margin(period: float) -> float:
    """Safety margin for `period`: 1 s per 60 s, at least 0.1 s (loopback jitter in tests)."""
    return max(0.1, period / 60)


def probe_wait(period: float) -> float:
    """How long the burst waits for a probe's answer: 5 s per 60 s, RyzeAPI answers in far less."""
    return min(5.0, period / 12)


class QuotaLimiter:
    """At most `limit` admissions in any window of `period` seconds, waiters served FIFO.

    Time is the running loop's clock (`loop.time()`) and waits are `asyncio.sleep`, so a
    virtual-time loop drives it exactly. An instance serves one event loop at a time.

    With ``learn_first`` the first admission goes alone: nobody else is admitted until
    `settle()` is called after its attempt (the client does, answer or not), so the answer's
    ``X-RateLimit-Remaining`` (fed to `observe`) caps the burst before it leaves. A process
    restarted inside a window someone already spent draws no 429s that way. A slow answer does
    not stall the quota: the others wait for it `probe_wait(period)` seconds at most (5 s per
    60 s), then go by our own log as without learning.
    """

    __slots__ = (
        "__weakref__", "_budget", "_budget_until", "_head", "_hold", "_learn", "_limit", "_margin",
        "_period", "_probe_deadline", "_probe_out", "_probing", "_queue", "_stamps", "_waiters",
    )

    def __init__(
        self, limit: int, period: float, *, margin: float | None = None, learn_first: bool = False
    ) -> None:
        check_config(limit, period, margin)
        self._limit = limit
        self._period = float(period)
        self._margin = default_margin(period) if margin is None else float(margin)
        # Admission times, oldest first. Invariant: at most `limit` entries (the limit only ever
        # goes down, so older entries can never matter again).
        self._stamps: deque[float] = deque()
        self._hold = -math.inf  # nobody is admitted before this loop time
        # The server's word: at most `_budget` more admissions before loop time `_budget_until`.
        self._budget = 0
        self._budget_until = -math.inf
        self._learn = learn_first  # admissions are settle()d: probes may be sent
        self._probing = learn_first  # the next admission goes alone
        self._probe_out: asyncio.Event | None = None  # set by settle() once the probe is done
        self._probe_deadline = -math.inf  # past it, nobody waits for the probe any more
        # FIFO of futures of waiting acquire()s behind the head, which sleeps towards its slot.
        # A cancelled waiter leaves its (cancelled) future in place, skipped when reached: O(1).
        self._head: asyncio.Future[None] | None = None
        self._queue: deque[asyncio.Future[None]] = deque()
        self._waiters = 0  # acquire()s still inside, the head included (for repr and compaction)

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
            f"waiting={self._waiters})"
        )

    def _slot_free_at(self, stamp: float) -> float:
        # The one expression for when an admission leaves the log: pruning and waiting must
        # agree to the last bit (float sums are not associative), or the log over-admits.
        return stamp + (self._period + self._margin)

    def _prune(self, now: float) -> None:
        stamps = self._stamps
        while stamps and self._slot_free_at(stamps[0]) <= now:
            stamps.popleft()

    def _delay(self, now: float) -> float:
        """Seconds from `now` until one more admission is allowed (<= 0: admit now)."""
        if self._probe_out is not None and now < self._probe_deadline:
            return self._probe_deadline - now  # or until settle(), if sooner
        self._prune(now)
        stamps = self._stamps
        wait = self._slot_free_at(stamps[0]) - now if len(stamps) >= self._limit else 0.0
        if self._budget <= 0 and now < self._budget_until:
            wait = max(wait, self._budget_until - now)
        return max(wait, self._hold - now)

    def _admit(self, now: float) -> float:
        self._stamps.append(now)
        if now < self._budget_until:
            self._budget -= 1
        elif self._learn and self._budget_until > -math.inf:
            # The server's cap has reset. A sliding server frees only the slots that left its
            # window, which our log cannot know (they were someone else's): learn again.
            self._budget_until = -math.inf
            self._probing = True
        if self._probe_out is not None:  # the probe is slow: stop waiting for it
            self.settle()
        if self._probing:
            self._probing = False
            self._probe_out = asyncio.Event()
            self._probe_deadline = now + probe_wait(self._period)
        return now

    def try_acquire(self) -> float | None:
        """Take a slot if one is free now and nobody waits: its loop time; else None."""
        if self._head is None:  # no head: nobody live is waiting
            now = asyncio.get_running_loop().time()
            if self._delay(now) <= 0:
                return self._admit(now)
        return None

    def release(self, slot: float) -> None:
        """Give back the slot admitted at loop time ``slot``, unused: nothing was sent with it.

        Waiters already asleep keep their schedule (they may be admitted later than they could
        be, never earlier than the quota allows).
        """
        stamps = self._stamps
        index = bisect.bisect_left(stamps, slot)
        if index < len(stamps) and stamps[index] == slot:
            del stamps[index]
            if slot < self._budget_until:
                self._budget += 1

    async def acquire(self, *, deadline: float | None = None) -> float:
        """Wait for a slot (first come, first served), take it, and return its loop time.

        Cancelling a waiter gives its place to the next one and takes no slot. ``deadline`` is
        reserved (see ``QuotaBackend``): only None is accepted today.
        """
        if deadline is not None:
            raise NotImplementedError("acquire(deadline=...) is not supported yet")
        loop = asyncio.get_running_loop()
        slot = self.try_acquire()  # fast path: nobody waiting, quota left
        if slot is not None:
            return slot
        turn: asyncio.Future[None] = loop.create_future()
        self._waiters += 1
        if self._head is None:
            self._head = turn
        else:
            self._queue.append(turn)
        try:
            if self._head is not turn:
                await turn  # set when everyone ahead has been admitted or has left
            while True:
                now = loop.time()
                delay = self._delay(now)
                if delay <= 0:
                    return self._admit(now)
                # Every change made while we sleep (lower limit, longer period, later hold,
                # smaller budget) only moves the slot later, so waking and re-checking suffices.
                probe = self._probe_out
                if probe is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(probe.wait(), max(delay, 1e-6))
                else:
                    # At least a microsecond: now + delay may round back to now, and a virtual
                    # clock that jumps to the timer would then never move.
                    await asyncio.sleep(max(delay, 1e-6))
        finally:
            self._waiters -= 1
            if self._head is turn:
                self._head = None
                self._promote()
            elif len(self._queue) > 2 * self._waiters + 64:  # many left: drop their futures
                self._queue = deque(f for f in self._queue if not f.done())

    def _promote(self) -> None:
        queue = self._queue
        while queue:
            turn = queue.popleft()
            if not turn.done():  # done: that waiter was cancelled
                self._head = turn
                turn.set_result(None)
                return

    def settle(self) -> None:
        """The probe's attempt is over (answered or not): admit the others. Idempotent."""
        probe, self._probe_out = self._probe_out, None
        if probe is not None:
            probe.set()

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
        self,
        *,
        limit: int | None,
        remaining: int | None,
        reset_after: float | None,
        admitted_at: float | None = None,
    ) -> None:
        """Take in a response's X-RateLimit headers (None: header absent or unreadable).

        `reset_after` is seconds from now until the server's counter resets, already converted
        with the response's Date header; `admitted_at` is the loop time its request was admitted
        (what `acquire` returned): admissions since then may not be in its count.
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
        if remaining is None or reset_after is None or math.isnan(reset_after):
            return
        now = asyncio.get_running_loop().time()
        self._prune(now)
        budget = max(remaining, 0) - self._admitted_since(admitted_at)
        if budget >= self._limit - len(self._stamps):
            # Our own log is at least as strict: it already waits for slots later than any
            # server window (only `period` long) that counted them can reset, and a sliding
            # server may report a pessimistic reset (its whole window clearing).
            return
        # The server counts requests we did not make (another client shares the token) or counts
        # differently: admit no more than it says remain until its reset. Clamped against
        # garbage headers and clock mismatch.
        until = now + min(max(reset_after, 0.0), 2 * self._period + 5)
        if now < self._budget_until:  # two reports on one window: the stricter wins
            budget = min(budget, self._budget)
            until = max(until, self._budget_until)
        self._budget, self._budget_until = max(budget, 0), until

    def _admitted_since(self, admitted_at: float | None) -> int:
        """Our admissions after the one at `admitted_at` (same instant counts: conservative)."""
        if admitted_at is None:
            return 0
        stamps = self._stamps
        first = bisect.bisect_left(stamps, admitted_at)
        later = len(stamps) - first
        if later and stamps[first] == admitted_at:
            later -= 1  # the answered request itself
        return later

    def tighten(self, limit: int, period: float, margin: float | None = None) -> None:
        """Adopt the stricter of two configurations (two clients on one token disagree).

        Keeps the lower limit, the longer period and the larger margin (`margin=None` stands for
        the default margin of the resulting period).
        """
        check_config(limit, period, margin)
        if limit < self._limit:
            self._lower_limit(limit)
        self._period = max(self._period, float(period))
        wanted = default_margin(self._period) if margin is None else float(margin)
        self._margin = max(self._margin, wanted)

    def _lower_limit(self, limit: int) -> None:
        self._limit = limit
        while len(self._stamps) > limit:
            self._stamps.popleft()
