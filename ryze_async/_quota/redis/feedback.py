"""Server feedback on the shared Redis quota: a 429's hold, ``X-RateLimit-*`` fields, shared with
every process through the FEEDBACK script (`lua`). Written in the background; the next
admission waits for the writes first (`flush`)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from typing import Any

from ..._exceptions import QuotaBackendError

__all__ = ["IDLE_TTL_MS", "RedisFeedback"]

_US = 1_000_000
IDLE_TTL_MS = 60_000  # idle keys outlive their last relevant entry by this much


class RedisFeedback:
    """`RedisQuota`'s ``hold_until`` and ``observe``, and its background writes (``flush``)."""

    _limit: int
    _period: float
    _window_us: int
    _feedback: Any
    _pending: set[asyncio.Task[Any]]

    async def _run(self, script: Any, args: list[int | str]) -> Any:
        raise NotImplementedError  # RedisQuota's

    def _background(self, job: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        # Read here too: a failure nobody flushes (the client closed) is not an unread error;
        # flush() still sees it and fails closed.
        task.add_done_callback(_read_outcome)
        self._pending.add(task)

    async def flush(self) -> None:
        """Wait until the feedback given so far is in Redis; a failed write fails closed."""
        while self._pending:
            tasks = set(self._pending)
            # asyncio.wait, not gather: a caller cancelled here leaves the writes running (a
            # cancelled waiter's give-back, a 429's hold), for the next flush to wait for.
            await asyncio.wait(tasks)
            self._pending -= tasks
            for task in tasks:
                failure = None if task.cancelled() else task.exception()
                if isinstance(failure, QuotaBackendError):
                    raise failure

    def hold_until(self, delay: float) -> None:
        """Admit nobody, in any process, for `delay` seconds from now (Redis time)."""
        if math.isnan(delay):
            raise ValueError("delay must be a number of seconds, not NaN")
        self._send_feedback(hold=delay)

    def observe(
        self,
        *,
        limit: int | None,
        remaining: int | None,
        reset_after: float | None,
        admitted_at: float | None = None,
    ) -> None:
        """Take in a response's X-RateLimit headers (None: absent); shared with every process."""
        usable = remaining is not None and reset_after is not None and not math.isnan(reset_after)
        if not usable and (limit is None or limit >= self._limit):
            return
        if limit is not None and 1 <= limit < self._limit:
            self._limit = limit
        self._send_feedback(
            server_limit=limit,
            remaining=remaining if usable else None,
            reset_after=reset_after if usable else None,
            admitted_at=admitted_at,
        )

    def _send_feedback(
        self,
        *,
        hold: float | None = None,
        server_limit: int | None = None,
        remaining: int | None = None,
        reset_after: float | None = None,
        admitted_at: float | None = None,
    ) -> None:
        def us(seconds: float | None) -> int:  # a duration of a day at most: no inf overflow
            return -1 if seconds is None else max(0, round(min(seconds, 86400.0) * _US))

        args: list[int | str] = [
            us(hold), -1 if remaining is None else max(remaining, 0), us(reset_after),
            -1 if admitted_at is None else round(admitted_at * _US),
            -1 if server_limit is None else server_limit,
            self._limit, self._window_us, IDLE_TTL_MS, round((2 * self._period + 5) * _US),
        ]
        self._background(self._run(self._feedback, args))


def _read_outcome(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
