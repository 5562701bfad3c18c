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

Sharing (``shared``): `shared_limiter` gives every client of one event loop that uses the same
token on the same server (base URL origin) the same limiter. Clients in other event loops,
threads or processes do not share it (each would spend the whole quota); a Redis-backed
``QuotaBackend`` for that case is future work. The server's X-RateLimit-Remaining still keeps
them apart: an answer that says fewer remain than our own log thinks caps our admissions until
its reset.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import weakref
from collections import deque
from typing import Literal, NamedTuple

from .._checks import check_quota as check_config
from .._checks import check_settings
from .._exceptions import QuotaTimeoutError
from .._public import public

__all__ = [
    "Lane", "QuotaLimiter", "check_config", "check_reserve", "default_margin", "late_allowance",
    "probe_wait", "stamp_allowance", "users_limiter",
]

#: A waiter's lane: interactive waiters are admitted before any bulk waiter.
Lane = Literal["interactive", "bulk"]

_log = logging.getLogger("ryze_async")


#: The most waiters the limiters of one event loop wake, together, in one turn of the loop.
WAKES_PER_TURN = 8

# Per event loop: waiters woken in its current turn (weak: a closed loop is not kept alive).
_woken: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[int]] = (
    weakref.WeakKeyDictionary())


def _take_wake(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether one more waiter may be woken in the loop's current turn (issue 18). Unrelated
    limiters whose slots come at one instant (clients started together) would otherwise wake
    their whole bursts in one turn, hundreds of calls starting before the loop serves anything
    else; beyond `WAKES_PER_TURN` the rest wake in the next turns, in order, at the same time.
    Ordered rather than jittered: every slot still goes at the instant the quota allows (a
    jitter would delay some for nothing, and still wake one limiter's burst in one turn)."""
    woken = _woken.get(loop)
    if woken is None:
        woken = _woken[loop] = [0]
    if woken[0] >= WAKES_PER_TURN:
        return False
    if not woken[0]:
        # Queued before any pump this turn defers: the next turn starts with a fresh budget.
        loop.call_soon(woken.__setitem__, 0, 0)
    woken[0] += 1
    return True


def probe_wait(period: float) -> float:
    """How long the burst waits for a probe's answer: 5 s per 60 s, RyzeAPI answers in far less."""
    return min(5.0, period / 12)


def default_margin(period: float) -> float:
    """Safety margin for `period`: 1 s per 60 s, at least 0.1 s (loopback jitter in tests)."""
    return max(0.1, period / 60)


def late_allowance(margin: float) -> float:
    """How much later than its slot a request may leave and still be counted by it: half the
    margin. The other half is the request's way to the server; a request later than this is
    placed again (at the time it leaves) or waits for another slot (issue 18)."""
    return margin / 2


def stamp_allowance(margin: float) -> float:
    """How much later than its slot a request may leave and keep its slot's time: a tenth of
    the margin. A request that leaves later has its slot's time moved to when it left
    (``sent``); below this the move is not worth its cost (a Redis round trip) and the margin
    absorbs it (issue 18)."""
    return margin / 10


def check_reserve(reserve: int) -> None:
    """An interactive reserve is a count of slots, 0 or more."""
    check_settings(interactive_reserve=reserve)


class Admitted(float):
    """An admission's loop time that also knows its place among the limiter's admissions: one
    pump admits a batch at one loop time, and an answer must tell those admitted before it
    (the server may have counted them) from those after it (it may not have)."""

    __slots__ = ("seq",)
    seq: int


def _order(admitted_at: float) -> tuple[float, int]:
    """An admission's place in admission order (a float without one: first of its instant)."""
    return admitted_at, getattr(admitted_at, "seq", -1)


@public
class QuotaLimiter:
    """At most `limit` admissions in any window of `period` seconds, waiters served by lane, FIFO.

    Time is the running loop's clock (`loop.time()`) and waits are loop timers, so a
    virtual-time loop drives it exactly. An instance serves one event loop at a time.

    Lanes: a waiter of the ``"interactive"`` lane is admitted before every ``"bulk"`` waiter;
    within a lane, first come first served. ``reserve`` keeps that many slots of every window
    free of bulk traffic: bulk is admitted only while fewer than ``limit - reserve`` admissions
    are in the window (at least one, so bulk still moves if the server lowers the limit), so
    an interactive call finds a slot when bulk took the rest. Both only ever restrict bulk: the
    any-window bound is the same for every lane.

    One timer (``_pump``) admits the first waiter in line the moment its slot comes; a waiter
    only awaits its own future. A cancelled waiter leaves its future in its lane's deque,
    skipped when reached: O(1).

    With ``learn_first`` the first admission goes alone: nobody else is admitted until
    `settle()` is called after its attempt (the client does, answer or not), so the answer's
    ``X-RateLimit-Remaining`` (fed to `observe`) caps the burst before it leaves. A process
    restarted inside a window someone already spent draws no 429s that way. A slow answer does
    not stall the quota: the others wait for it `probe_wait(period)` seconds at most (5 s per
    60 s), then go by our own log as without learning.
    """

    __slots__ = (
        "__weakref__", "_admitted", "_budget", "_budget_until", "_fresh_at", "_fresh_until",
        "_hold", "_lanes", "_learn", "_limit", "_live", "_margin", "_own", "_period",
        "_probe_deadline", "_probe_out", "_probing", "_reserve", "_server_limit", "_stamps",
        "_timer", "_users",
    )

    def __init__(
        self, limit: int, period: float, *, margin: float | None = None, learn_first: bool = False,
        reserve: int = 0,
    ) -> None:
        check_config(limit, period, margin)
        check_reserve(reserve)
        self._limit = limit
        self._period = float(period)
        self._margin = default_margin(period) if margin is None else float(margin)
        self._reserve = reserve
        # Whose settings are in force (`_apply`): the limiter's own (its constructor's and
        # `tighten`'s; None for `shared_limiter`'s, whose settings are only its clients'), its
        # joined users' while they are joined, and the lowest limit the server reported.
        self._own: _Settings | None = _Settings(limit, float(period), margin, reserve)
        self._users: weakref.WeakKeyDictionary[object, _Settings] = weakref.WeakKeyDictionary()
        self._server_limit: int | None = None
        # Admission times, oldest first, pruned once out of every window. Never trimmed to the
        # limit: a limit that goes down can come back up (a stricter user leaves), and every
        # admission of the window must still count then.
        self._stamps: deque[float] = deque()
        self._hold = -math.inf  # nobody is admitted before this loop time
        # The server's word: at most `_budget` more admissions before loop time `_budget_until`.
        self._budget = 0
        self._budget_until = -math.inf
        # The freshest answer taken in (the admission it answered), until its reset: an older
        # answer arriving after it knows less and changes nothing.
        self._fresh_at: tuple[float, int] = (-math.inf, -1)
        self._fresh_until = -math.inf
        self._admitted = 0  # admissions so far: each one's place in admission order
        self._learn = learn_first  # admissions are settle()d: probes may be sent
        self._probing = learn_first  # the next admission goes alone
        self._probe_out = False  # a probe is out: the others wait for settle() or the deadline
        self._probe_deadline = -math.inf  # past it, nobody waits for the probe any more
        # Per lane (0 interactive, 1 bulk): futures of waiting acquire()s, and how many of them
        # are live (not cancelled, not admitted).
        self._lanes: list[deque[asyncio.Future[float]]] = [deque(), deque()]
        self._live = [0, 0]
        self._timer: asyncio.Handle | None = None

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def period(self) -> float:
        return self._period

    @property
    def margin(self) -> float:
        return self._margin

    @property
    def reserve(self) -> int:
        return self._reserve

    def __repr__(self) -> str:
        return (
            f"QuotaLimiter(limit={self._limit}, period={self._period}, margin={self._margin}, "
            f"reserve={self._reserve}, waiting={sum(self._live)})"
        )

    def _slot_free_at(self, stamp: float) -> float:
        # The one expression for when an admission leaves the log: pruning and waiting must
        # agree to the last bit (float sums are not associative), or the log over-admits.
        return stamp + (self._period + self._margin)

    def _prune(self, now: float) -> None:
        stamps = self._stamps
        while stamps and self._slot_free_at(stamps[0]) <= now:
            stamps.popleft()

    def _cap(self, lane: int) -> int:
        return self._limit if lane == 0 else max(1, self._limit - self._reserve)

    def _delay(self, now: float, lane: int = 0) -> float:
        """Seconds from `now` until one more admission of `lane` is allowed (<= 0: admit now)."""
        if self._probe_out and now < self._probe_deadline:
            return self._probe_deadline - now  # or until settle(), if sooner
        self._prune(now)
        stamps = self._stamps
        cap = self._cap(lane)
        count = len(stamps)
        wait = self._slot_free_at(stamps[count - cap]) - now if count >= cap else 0.0
        if self._budget <= (lane and self._reserve) and now < self._budget_until:
            wait = max(wait, self._budget_until - now)
        return max(wait, self._hold - now)

    def _admit(self, now: float) -> float:
        slot = Admitted(now)
        slot.seq = self._admitted = self._admitted + 1
        self._stamps.append(slot)
        if now < self._budget_until:
            self._budget -= 1
        elif self._learn and self._budget_until > -math.inf:
            # The server's cap has reset. A sliding server frees only the slots that left its
            # window, which our log cannot know (they were someone else's): learn again.
            self._budget_until = -math.inf
            self._probing = True
        self._probe_out = False  # a slow probe: stop waiting for it
        if self._probing:
            self._probing = False
            self._probe_out = True
            self._probe_deadline = now + probe_wait(self._period)
        return slot

    def try_acquire(self, *, lane: Lane = "interactive") -> float | None:
        """Take a slot if one is free now and nobody of ``lane`` or a higher one waits."""
        live = self._live
        index = 1 if lane == "bulk" else 0
        if live[0] or (index and live[1]):
            return None
        now = asyncio.get_running_loop().time()
        if self._delay(now, index) <= 0:
            return self._admit(now)
        return None

    def release(self, slot: float) -> None:
        """Give back the slot admitted at loop time ``slot``, unused: nothing was sent with it."""
        if self._drop(slot) and (self._live[0] or self._live[1]):
            self._pump()

    def _drop(self, slot: float) -> bool:
        """Take the admission ``slot`` out of the log (True), if it is there."""
        index = self._find(slot)
        if index is None:
            return False
        del self._stamps[index]
        if slot < self._budget_until:
            self._budget += 1
        return True

    def _find(self, slot: float) -> int | None:
        """Where the admission ``slot`` is in the log (None: not there)."""
        stamps = self._stamps
        index = bisect.bisect_left(stamps, slot)
        mine = getattr(slot, "seq", None)
        while (mine is not None and index + 1 < len(stamps) and stamps[index] == slot
               and getattr(stamps[index], "seq", None) != mine):
            index += 1  # this very admission among those of its instant
        return index if index < len(stamps) and stamps[index] == slot else None

    def sent(self, slot: float) -> float:
        """The request of ``slot`` is leaving now (its bytes written): a slot's time is
        when its request leaves, so one that leaves more than `stamp_allowance` after it
        moves to now in the log, keeping its admission's sequence number; the slot it has now.
        Only ever later, so the limiter is only ever stricter: the next use of that slot waits
        a period + margin after this request left, not after its check (issue 18)."""
        now = asyncio.get_running_loop().time()
        if now - slot <= stamp_allowance(self._margin):
            return slot
        index = self._find(slot)
        if index is None:  # pruned or given back: nothing to move
            return slot
        moved = Admitted(now)
        moved.seq = getattr(self._stamps[index], "seq", -1)
        # Every entry is an admission or a move at a loop time up to now: the log stays sorted.
        del self._stamps[index]
        self._stamps.append(moved)
        return moved

    def late(self, slot: float) -> bool:
        """Whether a request leaving now is later than its slot by more than the margin allows
        (`late_allowance`): its slot must then be taken again (`readmit`)."""
        return asyncio.get_running_loop().time() - slot > late_allowance(self._margin)

    async def readmit(self, slot: float, *, lane: Lane = "interactive") -> float | None:
        """The slot for a request that leaves now: ``slot`` when it is on time; for a late one,
        a slot of now in its place (only ever later) when one fits, the lane's way, ahead of
        the waiters (it was admitted before them); else None: the slot is given back and the
        caller waits for another (``acquire``), sending nothing."""
        if not self.late(slot):
            return slot
        now = asyncio.get_running_loop().time()
        # The probe (a fresh quota's first admission) stays the probe at its new time.
        probe = self._probe_out and getattr(slot, "seq", None) == self._admitted
        self._drop(slot)
        if probe:
            self._probe_out, self._probing = False, True
        if self._delay(now, 1 if lane == "bulk" else 0) <= 0:
            return self._admit(now)
        if self._live[0] or self._live[1]:
            self._pump()
        return None

    async def acquire(self, *, lane: Lane = "interactive", deadline: float | None = None) -> float:
        """Wait for a slot (by lane, then first come first served), take it, return its time.

        ``deadline`` (a loop time): raise ``QuotaTimeoutError`` at once when the queue ahead
        and the log show that the slot comes later, else when the deadline passes unadmitted.
        Cancelling a waiter gives its place to the next one and takes no slot.
        """
        slot = self.try_acquire(lane=lane)  # fast path: nobody waiting, quota left
        if slot is not None:
            return slot
        index = 1 if lane == "bulk" else 0
        loop = asyncio.get_running_loop()
        if deadline is not None:
            self._refuse_if_late(loop.time(), index, deadline)
        turn: asyncio.Future[float] = loop.create_future()
        self._lanes[index].append(turn)
        self._live[index] += 1
        self._pump()
        try:
            if deadline is None:
                return await turn
            try:
                async with asyncio.timeout_at(deadline):
                    return await turn
            except TimeoutError:
                if turn.done() and not turn.cancelled():  # admitted at the deadline itself
                    return turn.result()
                raise QuotaTimeoutError(
                    "no quota slot came before the call's deadline; nothing was sent"
                ) from None
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # admitted, but never took it up
                self.release(turn.result())
            raise
        finally:
            self._leave(turn, index)

    def _leave(self, turn: asyncio.Future[float], index: int) -> None:
        if not turn.done() or turn.cancelled():  # not admitted: no longer waiting
            turn.cancel()
            self._live[index] -= 1
        if not (self._live[0] or self._live[1]):
            # Nobody waits: hold no timer and no future, which would keep the loop alive.
            self._stop_timer()
            for queue in self._lanes:
                queue.clear()
        elif len(self._lanes[index]) > 2 * self._live[index] + 64:  # many left: compact
            self._lanes[index] = deque(f for f in self._lanes[index] if not f.done())

    def _refuse_if_late(self, now: float, index: int, deadline: float) -> None:
        earliest = self._earliest(now, index, self._live[index])
        if earliest > deadline:
            raise QuotaTimeoutError(
                f"the quota has no slot for this call before {earliest - now:.3g} s from now, "
                f"past its deadline; nothing was sent", available_in=earliest - now,
            )

    def _earliest(self, now: float, index: int, ahead: int) -> float:
        """A lower bound of when a waiter of lane ``index`` with ``ahead`` waiters before it
        is admitted: the log played forward (a higher lane and a probe only make it later)."""
        self._prune(now)
        base = max(now, self._hold)
        if self._budget <= (index and self._reserve):
            base = max(base, self._budget_until)
        cap = self._cap(index)
        # Only the last `cap` admissions decide when the next one may come.
        recent = deque(self._stamps, maxlen=cap)
        when = base
        for _ in range(ahead + 1):
            if len(recent) == cap:
                when = max(base, self._slot_free_at(recent[0]))
            recent.append(when)
        return when

    def _first(self) -> tuple[asyncio.Future[float] | None, int]:
        for index, queue in enumerate(self._lanes):
            while queue and queue[0].done():  # cancelled, or gave up at its deadline
                queue.popleft()
            if queue:
                return queue[0], index
        return None, 0

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _pump(self) -> None:
        """Admit every waiter whose slot has come, in lane order; set the timer for the next."""
        self._stop_timer()
        loop = asyncio.get_running_loop()
        now = loop.time()
        while True:
            turn, index = self._first()
            if turn is None:
                return
            delay = self._delay(now, index)
            if delay > 0:
                # At least a microsecond: now + delay may round back to now, and a virtual
                # clock that jumps to the timer would then never move.
                self._timer = loop.call_at(now + max(delay, 1e-6), self._pump)
                return
            if not _take_wake(loop):  # the loop's turn is full: the rest in the next, in order
                self._timer = loop.call_soon(self._pump)
                return
            self._lanes[index].popleft()
            self._live[index] -= 1
            turn.set_result(self._admit(now))

    def settle(self) -> None:
        """The probe's attempt is over (answered or not): admit the others. Idempotent."""
        if self._probe_out:
            self._probe_out = False
            if self._live[0] or self._live[1]:
                self._pump()

    def next_delay(self, *, lane: Lane = "interactive") -> float:
        """Seconds until the next waiter of ``lane`` could be admitted (for logs and tests)."""
        index = 1 if lane == "bulk" else 0
        return max(0.0, self._delay(asyncio.get_running_loop().time(), index))

    # The server's word: a 429's hold, X-RateLimit-* feedback, another client's settings.

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
            self._server_limit = limit
            self._apply()
        if remaining is None or reset_after is None or math.isnan(reset_after):
            return
        now = asyncio.get_running_loop().time()
        self._prune(now)
        # Answers come back in any order. One of a later admission saw everything an earlier
        # one saw; the earlier one, read alone, must count our calls admitted after it as not
        # yet at the server, and would hold the quota until the reset for nothing.
        at = _order(now if admitted_at is None else admitted_at)
        fresh = self._fresh_until <= now or at > self._fresh_at
        if not fresh and at < self._fresh_at:
            return
        # Clamped against garbage headers and clock mismatch.
        until = now + min(max(reset_after, 0.0), 2 * self._period + 5)
        self._fresh_at, self._fresh_until = at, until
        budget = max(remaining, 0) - self._admitted_since(admitted_at)
        if budget >= self._limit - len(self._stamps):
            # Our own log is at least as strict: it already waits for slots later than any
            # server window (only `period` long) that counted them can reset, and a sliding
            # server may report a pessimistic reset (its whole window clearing). A budget an
            # older answer set is lifted.
            if fresh and now < self._budget_until:
                self._budget_until = -math.inf
            return
        # The server counts requests we did not make (another client shares the token) or counts
        # differently: admit no more than it says remain until its reset.
        if not fresh and now < self._budget_until:  # two answers as fresh: the stricter wins
            budget = min(budget, self._budget)
            until = max(until, self._budget_until)
        self._budget, self._budget_until = max(budget, 0), until

    def _admitted_since(self, admitted_at: float | None) -> int:
        """Our admissions after the one at `admitted_at`, in admission order (a plain float:
        all of its instant but one count as later, the conservative reading)."""
        if admitted_at is None:
            return 0
        stamps = self._stamps
        first = bisect.bisect_left(stamps, admitted_at)
        later = len(stamps) - first
        mine = _order(admitted_at)
        for index in range(first, len(stamps)):  # the same instant: at most one batch
            if stamps[index] != admitted_at:
                break
            if _order(stamps[index]) <= mine:
                later -= 1  # the answered request, or one admitted before it
        if not isinstance(admitted_at, Admitted) and later and stamps[first] == admitted_at:
            later -= 1  # a plain float: the answered request itself
        return later

    def tighten(
        self, limit: int, period: float, margin: float | None = None, reserve: int = 0
    ) -> None:
        """Adopt the stricter of two configurations (two clients on one token disagree), for
        good: the limiter's own settings become the stricter of both.

        Keeps the lower limit, the longer period, the larger margin (`margin=None` stands for
        the default margin of the resulting period) and the larger interactive reserve.
        """
        check_config(limit, period, margin)
        check_reserve(reserve)
        wanted = _Settings(limit, float(period), margin, reserve)
        self._own = wanted if self._own is None else _Settings(*_strictest([self._own, wanted]))
        self._apply()

    def join(
        self, user: object, limit: int, period: float, margin: float | None = None,
        reserve: int = 0,
    ) -> None:
        """Put `user`'s settings in force beside the others' until it `leave`s (or is garbage
        collected): the strictest of all holds, as with `tighten`. Joining again replaces the
        user's settings. `shared_limiter` joins each client; a closed client leaves."""
        check_config(limit, period, margin)
        check_reserve(reserve)
        self._users[user] = _Settings(limit, float(period), margin, reserve)
        self._apply()

    def leave(self, user: object) -> None:
        """`user`'s settings no longer count: a looser limit, period, margin or reserve of the
        others holds from now. Every admission made stays in the log: leaving never frees a
        slot the window still counts. A user that never joined: nothing happens."""
        if self._users.pop(user, None) is not None:
            self._apply()

    def _apply(self) -> None:
        """Put the strictest settings of the limiter's own and its users' in force, never
        looser than the server's reported limit; with neither, the last ones stay."""
        wanted = [*self._users.values()]
        if self._own is not None:
            wanted.append(self._own)
        limit, period, margin, reserve = _strictest(wanted) if wanted else (
            self._limit, self._period, self._margin, self._reserve)
        if self._server_limit is not None:
            limit = min(limit, self._server_limit)
        looser = (limit > self._limit or period < self._period or margin < self._margin
                  or reserve < self._reserve)
        self._limit, self._period, self._margin, self._reserve = limit, period, margin, reserve
        if looser and (self._live[0] or self._live[1]):
            self._pump()  # a slot may be free sooner than the timer set under the old settings


def users_limiter(
    limit: int, period: float, margin: float | None, *, learn_first: bool, reserve: int
) -> QuotaLimiter:
    """A limiter whose settings are only those of the users joined to it (`shared_limiter`'s:
    none of its clients' settings outlives the client). Until the first joins, and after the
    last leaves, the settings last in force stay."""
    limiter = QuotaLimiter(limit, period, margin=margin, learn_first=learn_first, reserve=reserve)
    limiter._own = None
    return limiter


class _Settings(NamedTuple):
    """One user's quota settings (`margin` None: the default margin of the period in force)."""

    limit: int
    period: float
    margin: float | None
    reserve: int


def _strictest(settings: list[_Settings]) -> tuple[int, float, float, int]:
    """The one home of "the stricter wins": the lowest limit, the longest period, the largest
    margin (a default one counted at that period) and the largest reserve."""
    period = max(one.period for one in settings)
    margin = max(default_margin(period) if one.margin is None else one.margin
                 for one in settings)
    return (min(one.limit for one in settings), period, margin,
            max(one.reserve for one in settings))
