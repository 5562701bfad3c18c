"""Per-token request counters for the fake server: fixed windows and a sliding log.

Both admit a request when fewer than ``limit`` requests were accepted in the window at its
arrival instant; a refused request (the 429) is never counted. All instants are on the
server's injectable clock, so tests move time instead of sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

WindowKind = Literal["fixed", "sliding"]


@dataclass(frozen=True, slots=True)
class RateState:
    """The counter as the ``X-RateLimit-*`` headers report it after a request."""

    limit: int
    remaining: int
    reset_at: float  # exact instant, Unix seconds on the server clock

    def headers(self) -> dict[str, str]:
        """The three headers; Reset is the ceiling so a client never resends too early."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }


class _Window(Protocol):
    def acquire(self, now: float) -> tuple[bool, RateState]: ...

    def peek(self, now: float) -> RateState: ...


class FixedWindow:
    """Windows ``[phase + k*period, phase + (k+1)*period)``; the counter restarts at each."""

    def __init__(self, limit: int, period: float, phase: float) -> None:
        self._limit = limit
        self._period = period
        self._phase = phase
        self._index: int | None = None
        self._count = 0

    def _roll(self, now: float) -> float:
        index = math.floor((now - self._phase) / self._period)
        # Only the current window matters; a clock set backwards simply starts a fresh one.
        if index != self._index:
            self._index = index
            self._count = 0
        return self._phase + (index + 1) * self._period

    def acquire(self, now: float) -> tuple[bool, RateState]:
        """Count a request arriving at `now` if the window has room."""
        end = self._roll(now)
        accepted = self._count < self._limit
        if accepted:
            self._count += 1
        return accepted, RateState(self._limit, self._limit - self._count, end)

    def peek(self, now: float) -> RateState:
        """The state at `now` without counting anything."""
        end = self._roll(now)
        return RateState(self._limit, self._limit - self._count, end)


class SlidingWindow:
    """Sliding log: the accepted requests in ``(now - period, now]``.

    Reset is when the oldest accepted request leaves the window (one slot frees then), or
    ``now + period`` when the log is empty (the earliest a request sent now would expire).
    """

    def __init__(self, limit: int, period: float) -> None:
        self._limit = limit
        self._period = period
        self._log: deque[float] = deque()

    def _prune(self, now: float) -> None:
        # `oldest + period <= now` (rather than `oldest <= now - period`) so that at exactly
        # the advertised reset instant the slot is free, with no float-rounding gap.
        while self._log and self._log[0] + self._period <= now:
            self._log.popleft()

    def _state(self, now: float) -> RateState:
        reset_at = (self._log[0] if self._log else now) + self._period
        return RateState(self._limit, self._limit - len(self._log), reset_at)

    def acquire(self, now: float) -> tuple[bool, RateState]:
        """Count a request arriving at `now` if the log has room."""
        self._prune(now)
        accepted = len(self._log) < self._limit
        if accepted:
            self._log.append(now)
        return accepted, self._state(now)

    def peek(self, now: float) -> RateState:
        """The state at `now` without counting anything."""
        self._prune(now)
        return self._state(now)


class RateLimiter:
    """One window per token: each token has its own bucket, like the real API."""

    def __init__(self, limit: int, period: float, kind: WindowKind, phase: float) -> None:
        self._limit = limit
        self._period = period
        self._kind: WindowKind = kind
        self._phase = phase
        self._windows: dict[str, _Window] = {}

    def _window(self, token: str) -> _Window:
        window = self._windows.get(token)
        if window is None:
            if self._kind == "fixed":
                window = FixedWindow(self._limit, self._period, self._phase)
            else:
                window = SlidingWindow(self._limit, self._period)
            self._windows[token] = window
        return window

    def acquire(self, token: str, now: float) -> tuple[bool, RateState]:
        """Admit (and count) or refuse a request for `token` arriving at `now`."""
        return self._window(token).acquire(now)

    def peek(self, token: str, now: float) -> RateState:
        """The state of `token`'s bucket at `now`, counting nothing."""
        return self._window(token).peek(now)

    def clear(self) -> None:
        """Forget every bucket."""
        self._windows.clear()
