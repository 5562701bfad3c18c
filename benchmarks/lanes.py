"""Lanes benchmark: how long a bot's (interactive) call waits for the quota while a campaign
saturates the token, with one FIFO queue, with lanes, and with lanes and a reserve.

Everything runs through `RyzeClient` (validation, quota, send, answer) on the virtual clock, with
a `MockTransport` that answers at once and stamps each request with the loop's time, so the wait
is exactly the quota's. The token allows 100 calls per 60 s (the default margin of 1 s). A
campaign keeps 200 bulk calls queued at all times; the bot's users ask for a call every 0-30 s
(seeded, uniform; each call its own task, as in a web app). Reported per setting: the bot's
wait p50/p99/max, the bulk calls sent per minute, and the most requests in any 60 s window
(checked: never over 100).

    python benchmarks/lanes.py          # 30 minutes of virtual time
    python benchmarks/lanes.py --quick  # 5 minutes; checks only that it works and the bound holds

Exit 1 when any window holds more than 100 requests, or (full run) when lanes do not bring the
bot's p99 wait under one period or the reserve does not bring it under a second.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from dataclasses import dataclass

from _report import finish, machine, ruled

from ryze_async import RyzeClient
from ryze_async.testing import MockRequest, MockResponse, MockTransport, run_virtual
from ryze_async.testing._quota_sim import max_in_window

LIMIT, PERIOD = 100, 60.0
BULK_QUEUE = 200  # campaign workers: this many bulk calls wait at all times
BOT_GAP = 30.0  # a bot user asks for a call every uniform(0, BOT_GAP) s: 4 a minute
RESERVE = 5


@dataclass(frozen=True)
class Setting:
    name: str
    bot_priority: str
    reserve: int


SETTINGS = (
    Setting("one FIFO queue (no lanes)", "bulk", 0),
    Setting("lanes", "interactive", 0),
    Setting(f"lanes + interactive_reserve={RESERVE}", "interactive", RESERVE),
)


@dataclass(frozen=True)
class Result:
    waits: list[float]
    bulk_per_minute: float
    worst_window: int


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def scenario(setting: Setting, minutes: float) -> Result:
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []

    def answer(request: MockRequest) -> MockResponse:
        arrivals.append(loop.time())
        return MockResponse(200, {"success": True, "message": "placed", "callId": "c"})

    transport = MockTransport(answer)
    common = {"token": "bench-token", "instance": "shop", "transport": transport,
              "rate_limit": LIMIT, "rate_period": PERIOD}
    campaign = RyzeClient(**common, priority="bulk", interactive_reserve=setting.reserve)  # type: ignore[arg-type]
    bot = RyzeClient(**common, priority=setting.bot_priority)  # type: ignore[arg-type]
    end = loop.time() + minutes * 60
    bulk_sent = 0

    async def worker(index: int) -> None:
        nonlocal bulk_sent
        while loop.time() < end:
            await campaign.fake_call(f"55119{index:08d}")
            bulk_sent += 1

    workers = [asyncio.create_task(worker(i)) for i in range(BULK_QUEUE)]
    rng = random.Random(11)
    waits: list[float] = []

    async def user() -> None:
        began = loop.time()
        await bot.fake_call("5511988887777")
        waits.append(loop.time() - began)

    users: list[asyncio.Task[None]] = []
    await asyncio.sleep(PERIOD / 2)  # the campaign has spent its burst: the token is saturated
    while loop.time() < end:
        await asyncio.sleep(rng.uniform(0, BOT_GAP))
        users.append(asyncio.create_task(user()))
    await asyncio.gather(*users)
    for task in workers:
        task.cancel()
    for outcome in await asyncio.gather(*workers, return_exceptions=True):
        if not isinstance(outcome, asyncio.CancelledError | None):
            raise outcome
    return Result(waits, bulk_sent / minutes, max_in_window(arrivals, PERIOD))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    minutes = 5.0 if args.quick else 30.0
    started = time.perf_counter()
    print(machine(f"{minutes:g} virtual minutes per setting, {LIMIT} calls per {PERIOD:g} s, "
                  f"{BULK_QUEUE} bulk calls queued, a bot call every 0-{BOT_GAP:g} s"))
    print()
    print("\n".join(ruled(f"{'setting':<34} {'bot calls':>9} {'wait p50':>9} {'p99':>8} "
                          f"{'max':>8} {'bulk/min':>9} {'max in 60 s':>12}")))
    failures: list[str] = []
    results: dict[str, Result] = {}
    for setting in SETTINGS:
        result = results[setting.name] = run_virtual(scenario(setting, minutes), start=1000.0)
        w = result.waits
        print(f"{setting.name:<34} {len(w):>9} {statistics.median(w):>8.2f}s "
              f"{percentile(w, 0.99):>7.2f}s {max(w):>7.2f}s {result.bulk_per_minute:>9.1f} "
              f"{result.worst_window:>12}")
        if result.worst_window > LIMIT:
            failures.append(f"{setting.name}: {result.worst_window} requests in one window")
    lanes, reserved = (results[s.name] for s in SETTINGS[1:])
    if not args.quick:
        if percentile(lanes.waits, 0.99) > PERIOD + 1.0:  # the next free slot, margin included
            failures.append("lanes: the bot's p99 wait is over one period")
        if percentile(reserved.waits, 0.99) > 1.0:
            failures.append("reserve: the bot's p99 wait is over a second")
    print()
    return finish(started, args.quick, failures, "the bound held in every window; lanes and "
                  "the reserve put the bot ahead of the campaign", sep="; ")


if __name__ == "__main__":
    sys.exit(main())
