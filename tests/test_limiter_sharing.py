"""shared_limiter: one QuotaLimiter per token and event loop, on virtual time."""

from __future__ import annotations

import asyncio
import gc
import weakref

from ryze_async import QuotaLimiter
from ryze_async._quota import _shared as _limiter
from ryze_async._quota._shared import shared_limiter
from ryze_async.testing._virtual_time import run_virtual

LIMIT = 100
PERIOD = 60.0


def test_shared_limiter_per_token_and_loop() -> None:
    async def main() -> tuple[QuotaLimiter, QuotaLimiter, QuotaLimiter]:
        a = shared_limiter("token-one", LIMIT, PERIOD, None)
        b = shared_limiter("token-one", LIMIT, PERIOD, None)
        c = shared_limiter("token-two", LIMIT, PERIOD, None)
        return a, b, c

    a, b, c = run_virtual(main())
    assert a is b
    assert a is not c
    other_loop, _, _ = run_virtual(main())
    assert other_loop is not a


def test_shared_limiter_tightens_to_the_stricter_configuration() -> None:
    async def main() -> tuple[QuotaLimiter, QuotaLimiter]:
        first = shared_limiter("token", 100, 60.0, None)
        second = shared_limiter("token", 50, 90.0, 0.5)
        third = shared_limiter("token", 200, 30.0, None)  # looser: changes nothing
        assert second is first
        assert third is first
        return first, third

    limiter, _ = run_virtual(main())
    assert (limiter.limit, limiter.period, limiter.margin) == (50, 90.0, 1.5)


def test_shared_limiter_never_keeps_the_raw_token() -> None:
    token = "".join(["sk-", "live-", "0123456789abcdef"])  # built at run time: not interned

    async def main() -> None:
        limiter = shared_limiter(token, LIMIT, PERIOD, None)
        await limiter.acquire()
        per_loop = _limiter._registry[asyncio.get_running_loop()]
        assert all(token not in key for key in per_loop)
        for holder in (per_loop, limiter):
            assert not any(ref is token for ref in gc.get_referents(holder))
        assert not any(r is per_loop or r is limiter for r in gc.get_referrers(token))
        assert token not in repr(limiter)

    run_virtual(main())


def test_registry_does_not_keep_finished_loops_alive() -> None:
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        limiter = shared_limiter("token", 1, 10.0, None)
        await limiter.acquire()
        await limiter.acquire()  # waits: futures and timers of this loop passed through it

    run_virtual(main())
    gc.collect()
    assert loops[0]() is None
