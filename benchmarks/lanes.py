"""Lanes benchmark: how long a bot's (interactive) call waits for the quota while a campaign
saturates the token, with one FIFO queue, with lanes, and with lanes and a reserve.

Everything runs through `RyzeClient` (validation, quota, send, answer) on the virtual clock, with
a `MockTransport` that answers at once and stamps each request with the loop's time, so the wait
is exactly the quota's. The token allows 100 calls per 60 s (the default margin of 1 s). A
campaign keeps 200 bulk calls queued at all times; the bot's users ask for a call every 0-30 s
(seeded, uniform; each call its own task, as in a web app). Reported per setting: the bot's
wait p50/p99/max, the bulk calls sent per minute, and the most requests in any 60 s window
(checked: never over 100).

The second table makes the same comparison across two processes on the shared Redis quota
(``quota_url=``), with a real redis-server and real time (`_lanes_redis`): a campaign process
keeps 40 bulk calls queued while a bot process (interactive lane) asks every 0-3 s, each call
its own task, its wait taken from asking to the call's return; the bot without a reserve, then
with ``interactive_reserve=5``, then idle with that reserve (what the reserve costs the
campaign when nobody uses it). Redis time is real, so the quota is scaled down to 20 calls per
2 s (margin 0.1 s) and waits are also given in periods. Both processes call one fake server run
here (sliding window), whose record is checked: never more than 20 requests in any 2 s, no 429.
Skipped, with a line saying so, when redis-server or the ``redis`` package is missing.

    python benchmarks/lanes.py          # 30 virtual minutes; 90 s per Redis setting (~5 min)
    python benchmarks/lanes.py --quick  # 5 virtual minutes, 5 s per Redis setting; functional
    python benchmarks/lanes.py --quick --seconds 60  # the Redis table at 60 s per setting

Exit 1 when any window holds more than the limit, the server answered a 429 or anything but
200, or (a full run, or a Redis table of 30 s and more) when lanes do not bring the bot's p99
wait under one period (one process) or 1.2 periods (two processes, issue 18), the reserve does
not bring it under a second (one process) or under a quarter of a period (two processes), or
the campaign beside an idle reserve of 5 places fewer than 14.5 calls per period (issue 18).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from dataclasses import dataclass

import _lanes_redis
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


def one_process(minutes: float, quick: bool) -> list[str]:
    """The first table (virtual clock); returns the failed checks."""
    print("one process, virtual clock:")
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
    if not quick:
        if percentile(lanes.waits, 0.99) > PERIOD + 1.0:  # the next free slot, margin included
            failures.append("lanes: the bot's p99 wait is over one period")
        if percentile(reserved.waits, 0.99) > 1.0:
            failures.append("reserve: the bot's p99 wait is over a second")
    return failures


def redis_row(name: str, result: _lanes_redis.Result) -> str:
    """One line of the second table: waits in seconds and in periods (P)."""
    period = _lanes_redis.PERIOD
    w = result.waits or [float("nan")]
    p50, p99 = statistics.median(w), percentile(w, 0.99)
    over = sum(wait > _lanes_redis.MAX_RESERVED_P99 for wait in result.waits)
    return (f"{name:<34} {len(result.waits):>9} {over:>8} {p50:>8.2f}s {p99:>7.2f}s "
            f"{max(w):>7.2f}s {p50 / period:>6.2f} {p99 / period:>6.2f} "
            f"{result.bulk_per_period:>7.1f} {result.worst_window:>10} {result.refused:>5}")


def two_processes(seconds: float, quick: bool) -> list[str]:
    """The second table (two processes, the Redis quota, real time); returns the failed checks."""
    r = _lanes_redis
    print(f"two processes, one token, the shared Redis quota (quota_url=), real time, "
          f"{seconds:g} s "
          f"per setting;\nthe quota scaled down to {r.LIMIT} calls per {r.PERIOD:g} s (margin "
          f"{r.MARGIN:g} s); process 1 keeps {r.QUEUE} bulk calls queued, process 2 is a bot\n"
          f"asking every 0-{r.BOT_GAP:g} s; waits from asking to the call's return, in seconds "
          f"and in periods (P)")
    print("\n".join(ruled(f"{'setting':<34} {'bot calls':>9} {'over P/4':>8} {'wait p50':>9} "
                          f"{'p99':>8} {'max':>8} {'p50/P':>6} {'p99/P':>6} {'bulk/P':>7} "
                          f"{'max in 2 s':>10} {'429s':>5}")))
    results = r.run(seconds, quick)
    failures = []
    for name, result in results.items():
        print(redis_row(name, result))
        if result.worst_window > r.LIMIT:
            failures.append(f"{name}: {result.worst_window} requests in one {r.PERIOD:g} s")
        if result.refused or result.bad_statuses:
            failures.append(f"{name}: {result.refused} 429s, {result.bad_statuses} calls not 200")
        if not result.waits and not name.startswith("idle"):
            failures.append(f"{name}: the bot placed no call")
    if seconds < 30:  # too few bot calls for a p99
        return failures
    plain, reserved, idle = (results[s.name] for s in r.SETTINGS)
    if (p99 := percentile(plain.waits or [0.0], 0.99)) > r.MAX_P99:
        failures.append(f"two processes, no reserve: the bot's p99 wait is {p99:.2f} s, over "
                        f"1.2 periods ({r.MAX_P99:g} s)")
    if (p99 := percentile(reserved.waits or [0.0], 0.99)) > r.MAX_RESERVED_P99:
        failures.append(f"two processes, reserve: the bot's p99 wait is {p99:.2f} s, over "
                        f"a quarter of a period ({r.MAX_RESERVED_P99:g} s)")
    if idle.bulk_per_period < r.MIN_RESERVED_BULK:
        failures.append(f"two processes, idle reserve: the campaign placed "
                        f"{idle.bulk_per_period:.1f} calls per period, under "
                        f"{r.MIN_RESERVED_BULK:g}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds per Redis setting (default: 5 with --quick, else 90)")
    args = parser.parse_args()
    minutes = 5.0 if args.quick else 30.0
    started = time.perf_counter()
    print(machine(f"{minutes:g} virtual minutes per setting, {LIMIT} calls per {PERIOD:g} s, "
                  f"{BULK_QUEUE} bulk calls queued, a bot call every 0-{BOT_GAP:g} s"))
    print()
    failures = one_process(minutes, args.quick)
    print()
    skipped = _lanes_redis.missing()
    if skipped:
        print(f"two processes (Redis quota): skipped, {skipped}")
    else:
        seconds = args.seconds or (5.0 if args.quick else 90.0)
        failures += two_processes(seconds, args.quick and seconds < 30)
    print()
    return finish(started, args.quick, failures, "the bound held in every window; lanes and "
                  "the reserve put the bot ahead of the campaign"
                  + ("" if skipped else ", in one process and across two"), sep="; ")


if __name__ == "__main__":
    sys.exit(main())
