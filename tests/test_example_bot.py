"""examples/bot.py against the fake server, on the virtual clock: the user is answered at once,
called now when the quota allows, else called back later, once."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
from aiohttp import web

from ryze_async import RyzeClient
from ryze_async.testing import FakeRyzeServer, run_virtual

EXAMPLE = Path(__file__).parent.parent / "examples" / "bot.py"
LIMIT, PERIOD = 2, 10.0
EPOCH = 1_750_000_000.0


def load_bot() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_bot", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("example_bot", module)
    spec.loader.exec_module(module)
    return module


async def post(site_url: str, number: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, \
            session.post(f"{site_url}/call", params={"number": number}) as response:
        body: dict[str, Any] = await response.json()
        return body


def dialled(server: FakeRyzeServer, number: str) -> list[float]:
    return [r.received_at - EPOCH for r in server.placed_calls
            if r.json and r.json["number"] == number]


def test_the_bot_calls_now_or_promises_a_call_and_keeps_the_promise() -> None:
    bot = load_bot()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with FakeRyzeServer(clock=lambda: EPOCH + loop.time(), rate_limit=LIMIT,
                                  rate_period=PERIOD) as server:
            client = RyzeClient(token="test-token", instance="my-instance",
                                base_url=server.url, rate_limit=LIMIT, rate_period=PERIOD)
            runner = web.AppRunner(bot.make_app(client))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
            try:
                now = await post(url, "5511911110001")
                assert now["status"] == "calling"
                assert now["message"] == "calling you now"
                assert len(dialled(server, "5511911110001")) == 1
                # A campaign (bulk lane) takes the rest of the token's quota and queues more.
                campaign = client.with_options(priority="bulk")
                bulk = [asyncio.create_task(campaign.fake_call(f"55119222200{i:02d}"))
                        for i in range(6)]
                await asyncio.sleep(0.01)
                asked_at = loop.time()
                later = await post(url, "5511911110002")
                assert later["status"] == "scheduled"
                assert later["message"] == f"busy, will call you in {later['in_seconds']} s"
                assert later["in_seconds"] > bot.MAX_WAIT
                assert dialled(server, "5511911110002") == []  # nothing sent for the promise
                await asyncio.gather(*bulk)
                await asyncio.sleep(later["in_seconds"] + 2 * PERIOD)
                promised = dialled(server, "5511911110002")
                assert len(promised) == 1  # called back once
                # ...and ahead of the bulk calls still queued when its time came.
                assert promised[0] - asked_at <= later["in_seconds"] + PERIOD
                assert [r.status for r in server.requests].count(429) == 0
            finally:
                await runner.cleanup()
            assert client.closed

    run_virtual(main(), start=1000.0)
