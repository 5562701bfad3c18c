"""The one path of a call, as named steps: admit it through the quota backend, send it (with
resends of what provably never left), take the answer's rate feedback in, interpret it; a 429
goes round again after its reset. A mixin of ``RyzeClient`` (the state is the client's).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from ._answers import RateLimitFields, feedback, interpret, rate_limited_delay
from ._evidence import annotate
from ._exceptions import RyzeError
from ._hooks import CallKind, RetryScheduled
from ._models import CallResult
from ._options import Options
from ._quota import QuotaBackend, shared_limiter
from ._quota.choose import redis_quota
from ._retry import Call
from ._transports import RawResponse

if TYPE_CHECKING:
    from ._quota.redis.quota import RedisQuota

__all__ = ["BeforeSend", "NotSent", "Pipeline"]

_log = logging.getLogger("ryze_async")

#: Awaited before every attempt's first byte, after the quota admitted that attempt.
BeforeSend = Callable[[], Awaitable[None]]
#: Awaited when an attempt was proven refused (429) or never sent, before the client waits to
#: try again; not when it gives up (then the call raises).
NotSent = Callable[[], Awaitable[None]]


class Pipeline(Options):
    """``RyzeClient``'s call path (a mixin: the state is the client's)."""

    _urls: dict[tuple[CallKind, str | None], tuple[str, str]]
    _quota_url: str | None
    _quota_for_loop: tuple[asyncio.AbstractEventLoop, QuotaBackend] | None
    _redis_quota: RedisQuota | None

    def _call(
        self, kind: CallKind, instance: str | None, body: Sequence[bytes],
        before_send: BeforeSend | None, on_not_sent: NotSent | None,
    ) -> Call:
        key = (kind, instance)
        known = self._urls.get(key)
        if known is None:
            if len(self._urls) >= 64:  # many instance names: a bounded cache
                self._urls.clear()
            name = self._config.instance if instance is None else instance
            known = self._urls[key] = (self._config.call_url(kind, name), str(name))
        return Call(kind, known[1], known[0], body[0] if len(body) == 1 else body,
                    before_send, on_not_sent)

    def _quota(self) -> QuotaBackend | None:
        if self._is_view:  # a view uses its client's quota: one per client and loop, closed once
            return self._root._quota()
        cached = self._quota_for_loop
        if cached is not None and cached[0] is asyncio.get_running_loop():
            return cached[1]
        cfg = self._config
        if cfg.rate_limit is None:
            return None
        limiter: QuotaBackend
        if self._quota_url is not None:  # one quota for every process on the token: Redis
            # Its connections belong to this loop: another loop gets its own (see aclose).
            limiter = self._redis_quota = redis_quota(
                self._quota_url, token=cfg.token, server=cfg.base_url, limit=cfg.rate_limit,
                period=cfg.rate_period, margin=cfg.rate_margin, reserve=cfg.interactive_reserve)
        else:
            limiter = shared_limiter(cfg.token, cfg.rate_limit, cfg.rate_period,
                                     cfg.rate_margin, server=cfg.base_url, learn_first=True,
                                     reserve=cfg.interactive_reserve)
        self._quota_for_loop = (asyncio.get_running_loop(), limiter)
        return limiter

    def _announce_reserve_soon(self) -> None:
        """Built in a running loop with a shared quota: send this client's reserve to Redis
        now, so no other process's bulk call takes its slots before its first call. Without a
        running loop it waits for ``async with`` or the first call (see README, Bots)."""
        if self._quota_url is None or not self._config.interactive_reserve:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        announce_soon = getattr(self._quota(), "announce_soon", None)
        if announce_soon is not None:
            announce_soon()

    async def _announce_reserve(self) -> None:
        """With a shared quota, put this client's interactive reserve in force for every
        process on the token now, not only from its first call."""
        if self._quota_url is not None and self._config.interactive_reserve:
            announce = getattr(self._quota(), "announce", None)  # a view's is its client's
            if announce is not None:
                await announce()

    async def _close_shared_quota(self) -> None:
        """Close the Redis quota's connections, if this loop opened them (another loop's
        cannot be closed from here and go with their loop)."""
        quota, self._redis_quota = self._redis_quota, None
        cached = self._quota_for_loop
        if quota is not None and cached is not None and cached[0] is asyncio.get_running_loop():
            await quota.aclose()

    async def _place(self, call: Call) -> CallResult:
        """Admit and send the call until it is answered; a 429 goes round again."""
        quota = self._quota()
        refused = 0
        try:
            while True:
                response, rate, reset_after = await self._admitted_attempt(call, quota)
                if response.status != 429 or refused >= self._config.max_retries:
                    return interpret(response, rate, self._config)
                refused += 1
                await self._after_refusal(call, quota, response, reset_after)
        except RyzeError as exc:
            annotate(exc, call)  # the call's own facts: kind, instance, when it was sent
            raise

    async def _admitted_attempt(
        self, call: Call, quota: QuotaBackend | None
    ) -> tuple[RawResponse, RateLimitFields | None, float | None]:
        """Admit the call, send it (resending what never left), take its feedback in."""
        if quota is None:
            self._guard.check()
            return self._take_in(call, await self._sender.send(call), None, None)
        held = _Held(self, call, quota, await self._admit(call, quota))
        call.reached = False
        try:
            self._guard.check()
            response = await self._sender.send(call, held)
            return self._take_in(call, response, quota, held.slot)
        except BaseException:
            if not call.reached and held.slot is not None:  # the slot is unused
                quota.release(held.slot)
            raise
        finally:
            quota.settle()  # a fresh backend's first answer releases the burst

    def _take_in(
        self, call: Call, response: RawResponse, quota: QuotaBackend | None, slot: float | None
    ) -> tuple[RawResponse, RateLimitFields | None, float | None]:
        """The answer with its rate-limit fields and seconds to their reset, fed to the quota."""
        rate, reset_after = feedback(response, quota, slot)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("POST %s -> %d (remaining %s)", self._config.redact(call.url),
                       response.status, rate["remaining"] if rate else "?")
        return response, rate, reset_after

    async def _after_refusal(
        self, call: Call, quota: QuotaBackend | None, response: RawResponse,
        reset_after: float | None,
    ) -> None:
        """A 429 refused the call: report it, then wait out its reset (for every caller)."""
        delay = rate_limited_delay(response, reset_after, self._config.rate_period)
        _log.warning("429 rate limited; sending again in %.2f s", delay)
        if self._hooks is not None:
            self._hooks.emit("on_retry_scheduled", RetryScheduled(
                call.kind, call.instance, call.attempts + 1, delay, "rate_limited"))
        if call.on_not_sent is not None:  # a 429 was refused: provably not placed
            await call.on_not_sent()
        if quota is not None:
            quota.hold_until(delay)  # the next acquire waits it out, for every caller
        else:
            await self._guard.sleep(delay)


class _Held:
    """The quota slot one admitted attempt holds until its request leaves (a `SlotGate`): a
    slot's time is when the request leaves, so a late one is moved to now or taken again."""

    __slots__ = ("_call", "_pipeline", "_quota", "slot")

    def __init__(self, pipeline: Pipeline, call: Call, quota: QuotaBackend, slot: float) -> None:
        self._pipeline, self._call, self._quota = pipeline, call, quota
        self.slot: float | None = slot  # None: given back, not yet taken again

    def late(self) -> bool:
        return self.slot is None or self._quota.late(self.slot)

    async def readmit(self) -> bool:
        if self.slot is None:
            return False
        lane = self._call.lane
        slot = (await self._quota.readmit(self.slot) if lane is None
                else await self._quota.readmit(self.slot, lane=lane))
        self.slot = slot
        return slot is not None

    async def wait(self) -> None:
        self.slot = await self._pipeline._admit(self._call, self._quota)
