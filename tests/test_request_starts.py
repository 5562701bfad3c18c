"""#18: the clients of one event loop start a few requests per turn of the loop. Fifty
clients at a window's start asked for thousands of requests at once, and each turn of the loop
ran hundreds of connects, writes and answers (100-250 ms a turn, every task of the loop waiting
that long). Virtual clock, real sockets to the fake server: pacing costs turns, not time."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from typing import Any

import aiohttp
import pytest

from ryze_async import RyzeClient
from ryze_async.testing import FakeRyzeServer, run_virtual

STARTS_PER_TURN = 4  # docs/quota-bound.md: on fresh connections
POOLED_PER_FRESH = 2  # kept-alive ones: twice as many
CLIENTS, CALLS = 20, 10


@pytest.mark.parametrize(("keepalive", "most"), [
    (0.0, STARTS_PER_TURN), (15.0, STARTS_PER_TURN * POOLED_PER_FRESH)])
def test_many_clients_of_one_loop_start_a_few_requests_per_turn(
    monkeypatch: pytest.MonkeyPatch, keepalive: float, most: int,
) -> None:
    # No quota here: nothing else paces them, every call is ready at once.
    started: list[int] = []  # the turn each connection was asked for in
    turn = [0]
    real = aiohttp.TCPConnector.connect

    async def connect(self: aiohttp.TCPConnector, *args: Any, **kwargs: Any) -> Any:
        started.append(turn[0])
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.TCPConnector, "connect", connect)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        tokens = [f"token-{k}" for k in range(CLIENTS)]

        def tick() -> None:
            turn[0] += 1
            loop.call_soon(tick)

        async with FakeRyzeServer(token=tokens[0], tokens=tokens) as server, \
                contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(RyzeClient(
                token, "my-instance", base_url=server.url, rate_limit=None,
                keepalive_timeout=keepalive)) for token in tokens]
            began = loop.time()
            ticking = loop.call_soon(tick)
            calls = [clients[k].fake_call(f"55119{k:04d}{i:04d}")
                     for k in range(CLIENTS) for i in range(CALLS)]
            results = await asyncio.wait_for(asyncio.gather(*calls), 30)
            ticking.cancel()
            assert all(r.success for r in results)
            assert len(server.requests) == CLIENTS * CALLS
            return loop.time() - began

    took = run_virtual(main())
    per_turn = [started.count(t) for t in set(started)]
    assert len(started) == CLIENTS * CALLS
    # A turn's budget spans two of the ticks'; a full one is used (kept-alive connections start
    # more per turn: each costs the loop about half of a fresh one).
    assert most <= max(per_turn) <= 2 * most
    assert took == 0.0  # turns, not time


def test_a_loop_that_paced_requests_is_not_kept_alive() -> None:
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        async with FakeRyzeServer() as server, \
                RyzeClient("test-token", "my-instance", base_url=server.url,
                           rate_limit=None) as client:
            results = await asyncio.gather(
                *(client.fake_call(f"551190000{i:04d}") for i in range(3 * STARTS_PER_TURN)))
            assert all(r.success for r in results)

    run_virtual(main())
    gc.collect()
    assert loops[0]() is None
