"""A cancelled call ends cancelled: never an error a caller would take for a failed call.

A campaign worker's sender loop (``while True: try: await client.fake_call(...) except
Exception: ...``) stops only if cancelling it raises ``CancelledError``. A cancel turned into a
``RyzeError`` (a quota failure, a timeout) on the way keeps such a loop calling forever. These
tests cancel many in-flight calls at seeded random moments, through the public API, with the
local limiter and the shared Redis quota, against answers that are quick, slow or never come.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ryze_async import RedisQuota, RyzeClient, RyzeError
from ryze_async.testing import FakeRyzeServer, Fault, RedisServer, run_virtual
from ryze_async.testing._shared_quota import REDIS_SERVER

from .audio import MP3

TASKS = 40
Place = Callable[[RyzeClient, int], Awaitable[object]]

has_redis = pytest.mark.skipif(
    not Path(REDIS_SERVER).exists(), reason="redis-server is not installed (apt install redis)"
)



async def fake(client: RyzeClient, n: int) -> object:
    return await client.fake_call(f"55119{n:08d}")


async def audio(client: RyzeClient, n: int) -> object:
    return await client.audio_call(f"55119{n:08d}", media=MP3)


def make_client(server: FakeRyzeServer, quota_url: str | None) -> RyzeClient:
    return RyzeClient(
        "test-token", "my-instance", base_url=server.url, max_retries=0, rate_limit=20,
        rate_period=2.0, quota_url=quota_url, priority="bulk", timeout=1.0,
    )


async def storm(client: RyzeClient, place: Place, seed: int, spread: float) -> None:
    """Start TASKS calls, cancel each at a seeded random moment; every cancelled one must end
    cancelled, never with an error (nor a result)."""
    rng = random.Random(seed)
    tasks = [asyncio.create_task(place(client, seed * TASKS + i)) for i in range(TASKS)]
    delays = sorted((rng.uniform(0, spread), task) for task in tasks)
    cancelled: list[asyncio.Task[object]] = []
    began = asyncio.get_running_loop().time()
    for delay, task in delays:
        await asyncio.sleep(max(0.0, began + delay - asyncio.get_running_loop().time()))
        if task.cancel():
            cancelled.append(task)
    done, pending = await asyncio.wait(tasks, timeout=10)
    assert not pending, "cancelled calls still running"
    swallowed = [t.exception() for t in cancelled if not t.cancelled()]
    assert not swallowed, f"cancels turned into {swallowed[:3]!r}"
    for task in done - set(cancelled):  # finished before its cancel: a result or an error
        if not task.cancelled() and task.exception() is not None:
            assert isinstance(task.exception(), RyzeError)


async def worker_loop(client: RyzeClient, place: Place, seed: int) -> None:
    """The benchmark worker's sender, cancelled at random moments: each loop must stop."""
    rng = random.Random(seed)

    async def sender(index: int) -> None:
        n = index
        while True:
            # A failed call: the loop goes on (as the worker's `one`); a cancel ends it.
            with contextlib.suppress(Exception):
                await place(client, n)
            n += TASKS

    tasks = [asyncio.create_task(sender(seed * TASKS + i)) for i in range(TASKS // 4)]
    await asyncio.sleep(rng.uniform(0, 1.0))
    for task in tasks:
        task.cancel()
    _, pending = await asyncio.wait(tasks, timeout=10)
    for task in pending:  # do not leave them running after the test
        task.cancel()
    assert not pending, f"{len(pending)} sender loops kept calling after their cancel"


SCENARIOS = {
    "quick": {},
    "slow": {"response_delay": 0.05},
    "hang": {"fault": Fault.HANG},
    "refused": {"fault": Fault.RATE_LIMITED},
}


async def run_scenario(scenario: str, quota_url: str | None, place: Place, seeds: range,
                       spread: float) -> None:
    options = dict(SCENARIOS[scenario])
    fault = options.pop("fault", None)
    async with FakeRyzeServer(window="sliding", rate_limit=20, rate_period=2.0,
                              **options) as server:  # type: ignore[arg-type]
        if isinstance(fault, Fault):
            server.set_fault(fault)
        async with make_client(server, quota_url) as client:
            for seed in seeds:
                await storm(client, place, seed, spread)
                await worker_loop(client, place, seed)


@pytest.mark.parametrize("place", [fake, audio])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_cancel_storm_local_limiter(scenario: str, place: Place) -> None:
    # On the virtual clock: the cancels' moments, the answers' delays and the limiter's waits are
    # what this tests, and they cost no real time (the Redis quota's run on Redis's clock).
    run_virtual(run_scenario(scenario, None, place, range(3), spread=0.3))


@has_redis
@pytest.mark.parametrize("place", [fake, audio])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_cancel_storm_redis_quota(
    scenario: str, place: Place, redis_server: RedisServer
) -> None:
    await run_scenario(scenario, redis_server.url, place, range(3), spread=0.3)



async def test_closing_a_quota_keeps_its_caller_cancellable(redis_server: RedisServer) -> None:
    """Withdrawing the reserve waits for the renewing task to end; a cancel of whoever closes
    lands there too and must not be taken for the renewer's own."""
    quota = RedisQuota.from_url(redis_server.url, token_digest=uuid.uuid4().hex, limit=10,
                                period=1.0, reserve=3)
    await quota.announce()
    closer = asyncio.create_task(quota.aclose())
    await asyncio.sleep(0)  # the closer now waits for the renewer to end
    closer.cancel()
    await asyncio.wait([closer])
    await quota.aclose()  # what the cancelled close left (the pool)
    assert closer.cancelled()
