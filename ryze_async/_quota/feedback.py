"""The server's word in the local limiter: a 429's hold, ``X-RateLimit-*`` feedback, and the
stricter of two clients' settings (``_Feedback``, a base of ``QuotaLimiter``)."""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
from collections import deque

from .._checks import check_quota as check_config
from .._checks import check_settings

__all__ = ["Admitted", "check_reserve", "default_margin", "late_allowance"]

_log = logging.getLogger("ryze_async")


def default_margin(period: float) -> float:
    """Safety margin for `period`: 1 s per 60 s, at least 0.1 s (loopback jitter in tests)."""
    return max(0.1, period / 60)


def late_allowance(margin: float) -> float:
    """How much later than its slot a request may leave and still be counted by it: half the
    margin. The other half is the request's way to the server; a request later than this is
    placed again (at the time it leaves) or waits for another slot (issue 18)."""
    return margin / 2


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


class _Feedback:
    """What the server says, taken in; the state is ``QuotaLimiter``'s."""

    __slots__ = (
        "_budget", "_budget_until", "_fresh_at", "_fresh_until", "_hold", "_limit", "_margin",
        "_period", "_reserve", "_stamps",
    )
    _limit: int
    _period: float
    _margin: float
    _reserve: int
    _stamps: deque[float]
    _hold: float
    _budget: int
    _budget_until: float
    #: The freshest answer taken in (the admission it answered), until its reset: an older
    #: answer arriving after it knows less and changes nothing.
    _fresh_at: tuple[float, int]
    _fresh_until: float

    def _prune(self, now: float) -> None:
        raise NotImplementedError

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
        """Adopt the stricter of two configurations (two clients on one token disagree).

        Keeps the lower limit, the longer period, the larger margin (`margin=None` stands for
        the default margin of the resulting period) and the larger interactive reserve.
        """
        check_config(limit, period, margin)
        check_reserve(reserve)
        self._reserve = max(self._reserve, reserve)
        if limit < self._limit:
            self._lower_limit(limit)
        self._period = max(self._period, float(period))
        wanted = default_margin(self._period) if margin is None else float(margin)
        self._margin = max(self._margin, wanted)

    def _lower_limit(self, limit: int) -> None:
        self._limit = limit
        while len(self._stamps) > limit:
            self._stamps.popleft()
