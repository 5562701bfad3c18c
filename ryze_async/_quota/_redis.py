"""One quota for every process and host on a token: a sliding log in Redis (extra ``redis``).

`RedisQuota` is a `QuotaBackend` (public as ``ryze_async.RedisQuota``; ``RyzeClient(quota_url=)``
builds one per event loop through `_choose`). Every process that uses the same token on the same
server with the same Redis shares one log, so never more than ``limit`` requests reach the
server in any window of ``period`` seconds, fixed or sliding, at any phase. ``try_acquire``
never admits without asking Redis: each admission is one round trip. The design, and where it
differs from the libraries studied, is in `_redis_lua`'s docstring.

The client calls ``observe``/``hold_until``/``settle`` synchronously; here they start a write to
Redis in the background, and the next ``acquire`` (or ``aclose``) waits for those writes first,
so feedback is in Redis before this process's next admission and a failed write fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from redis import asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from .._exceptions import QuotaBackendError, QuotaTimeoutError
from ._local import Lane, default_margin, probe_wait
from ._redis_lua import ADMIT, FEEDBACK, RECHECK

if TYPE_CHECKING:
    from . import QuotaBackend

__all__ = ["Admission", "QuotaBackendError", "QuotaTimeoutError", "RedisQuota", "quota_from_url"]

_US = 1_000_000
_IDLE_TTL_MS = 60_000  # idle keys outlive their last relevant entry by this much
_PROBE_NAP = 0.02  # seconds between asks while a fresh quota's probe is out
_SOCKET_TIMEOUT = 2.0  # a Redis that does not answer within it fails the admission
_RESERVED, _PROBING = 0, 1


class Admission(float):
    """An admission's slot (Redis time, Unix seconds) that also knows its reservation's id."""

    __slots__ = ("member",)
    member: str


class RedisQuota:
    """At most `limit` admissions in any window of `period` seconds for every user of the keys.

    ``RyzeClient(quota_url=...)`` makes and closes its own; build one with `from_url` to admit
    other work through the same shared quota (``acquire``, then ``settle``; ``release`` a slot
    never used; ``aclose`` at the end).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        token_digest: str,
        limit: int,
        period: float,
        margin: float | None = None,
        learn_first: bool = True,
        where: str = "Redis",
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an integer >= 1, not {limit!r}")
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"period must be a finite number of seconds > 0, not {period!r}")
        margin = default_margin(period) if margin is None else margin
        if not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"margin must be a finite number of seconds >= 0, not {margin!r}")
        self._redis = redis
        self._limit, self._period, self._margin = limit, float(period), float(margin)
        self._window_us = round((self._period + self._margin) * _US)
        self._probe_ms = round(probe_wait(self._period) * 1000) if learn_first else 0
        self._where = where  # host:port/db only: a URL's password never gets here
        prefix = f"ryze:{{{token_digest}}}:"
        self._keys = [prefix + k for k in ("log", "blocked", "budget", "conf", "probe")]
        self._admit = redis.register_script(ADMIT)
        self._feedback = redis.register_script(FEEDBACK)
        self._recheck = redis.register_script(RECHECK)
        self._pending: set[asyncio.Task[Any]] = set()
        self._probe_member: str | None = None

    @classmethod
    def from_url(
        cls, url: str, *, token_digest: str, limit: int, period: float,
        margin: float | None = None,
    ) -> RedisQuota:
        """A quota on the Redis at `url` (``redis://``, ``rediss://`` or ``unix://``).

        `token_digest` names the quota's keys: a hash (``RyzeClient`` uses the sha256 of server
        origin and token), never the token. Socket timeouts are bounded and a failed command is
        retried once at most, so a dead Redis fails the admission within seconds instead of
        stalling it. Close it with ``aclose()``.
        """
        redis = aioredis.Redis.from_url(
            url, socket_timeout=_SOCKET_TIMEOUT, socket_connect_timeout=_SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 1), decode_responses=False,
        )
        kw = redis.connection_pool.connection_kwargs
        where = (  # never the URL: its password stays out of every message
            f"Redis at {kw.get('path')}" if "path" in kw
            else f"Redis at {kw.get('host')}:{kw.get('port')}/{kw.get('db', 0)}"
        )
        return cls(redis, token_digest=token_digest, limit=limit, period=period,
                   margin=margin, where=where)

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
            f"RedisQuota(limit={self._limit}, period={self._period}, margin={self._margin}, "
            f"backend={self._where!r})"
        )

    def _failed(self, exc: BaseException) -> QuotaBackendError:
        return QuotaBackendError(
            f"quota backend {self._where} failed ({type(exc).__name__}: {exc}); nothing was sent"
        )

    async def _run(self, script: Any, args: list[int | str]) -> Any:
        try:
            return await script(keys=self._keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed(exc) from exc

    def try_acquire(self, *, lane: Lane = "interactive") -> float | None:
        """Never a slot without asking Redis (a round trip): callers go on to ``acquire``."""
        return None

    async def acquire(
        self, *, lane: Lane = "interactive", deadline: float | None = None,
        max_wait: float | None = None, reserve: int = 0,
    ) -> Admission:
        """Reserve the next slot in the shared log, sleep until it, and return it.

        `max_wait` (seconds) or `deadline` (a loop time, the `QuotaBackend` form): when the slot
        is further away, raise `QuotaTimeoutError` at once with nothing reserved. `lane` is
        accepted and not yet used: the shared log is one first-come-first-served queue for
        every process (an interactive reservation would have to go in before queued bulk ones;
        the script's `reserve` argument is the start of that, unused by the client so far).
        Cancelling a waiter gives its reservation back.
        """
        await self.flush()
        member = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        if max_wait is not None:
            deadline = loop.time() + max(0.0, max_wait)
        try:
            while True:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                wait_us, slot_us = await self._reserve(member, left, reserve)
                if wait_us <= 0:
                    break
                await asyncio.sleep(wait_us / _US)
                # A hold set while we slept (another process's 429) moves our slot after it.
                if not await self._run(self._recheck, [member]):
                    break
        except asyncio.CancelledError:
            # Nothing was sent: give the slot back, even if the reply never reached us.
            self._background(self._remove(member))
            raise
        admission = Admission(slot_us / _US)
        admission.member = member
        return admission

    async def _reserve(self, member: str, max_wait: float | None, reserve: int) -> tuple[int, int]:
        """One reservation: (wait, slot) in microseconds, asking again while a probe is out."""
        args: list[int | str] = [
            self._limit, self._window_us, reserve, member,
            -1 if max_wait is None else round(max_wait * _US), _IDLE_TTL_MS, self._probe_ms,
        ]
        while True:
            kind, wait_us, slot_us, probed = await self._run(self._admit, args)
            if kind != _PROBING:
                break
            await asyncio.sleep(min(wait_us / _US, _PROBE_NAP))
        if kind != _RESERVED:
            raise QuotaTimeoutError(
                f"no quota slot within {max_wait} s (the next is in {wait_us / _US:.3f} s);"
                " nothing was sent"
            )
        if probed:
            self._probe_member = member
        return wait_us, slot_us

    async def _remove(self, member: str) -> None:
        try:
            await self._redis.zrem(self._keys[0], member)
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed(exc) from exc

    def release(self, slot: float) -> None:
        """Give back a slot that was admitted but never used for a send (never after sending).

        Only an `Admission` this quota returned names a reservation; any other float is ignored.
        """
        member = getattr(slot, "member", None)
        if isinstance(member, str):
            self._background(self._remove(member))

    def settle(self) -> None:
        """A fresh quota's first attempt is over: let the others in. Idempotent."""
        member, self._probe_member = self._probe_member, None
        if member is not None:
            self._background(self._end_probe(member))

    async def _end_probe(self, member: str) -> None:
        try:
            # Only our own probe: another process's may have replaced an expired one.
            if await self._redis.get(self._keys[4]) in (member, member.encode()):
                await self._redis.delete(self._keys[4])
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed(exc) from exc

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
            self._limit, self._window_us, _IDLE_TTL_MS, round((2 * self._period + 5) * _US),
        ]
        self._background(self._run(self._feedback, args))

    def _background(self, job: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        # Read here too: a failure nobody flushes (the client closed) is not an unread error;
        # flush() still sees it and fails closed.
        task.add_done_callback(_read_outcome)
        self._pending.add(task)

    async def flush(self) -> None:
        """Wait until the feedback given so far is in Redis; a failed write fails closed."""
        while self._pending:
            tasks, self._pending = self._pending, set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, QuotaBackendError):
                    raise result

    async def aclose(self) -> None:
        """Finish pending writes (best effort) and close the connection pool."""
        with contextlib.suppress(QuotaBackendError):
            await self.flush()
        await self._redis.aclose()


def quota_from_url(
    url: str, *, token_digest: str, limit: int, period: float, margin: float | None = None
) -> RedisQuota:
    """`RedisQuota.from_url` (kept for the benchmarks)."""
    return RedisQuota.from_url(
        url, token_digest=token_digest, limit=limit, period=period, margin=margin
    )


if TYPE_CHECKING:  # mypy checks that RedisQuota is a QuotaBackend
    def _is_a_backend(quota: RedisQuota) -> QuotaBackend:
        return quota


def _read_outcome(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
