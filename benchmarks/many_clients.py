"""Fifty plain clients on one event loop: 429s, the most per window, loop lag, time vs ideal.

A bot serving 50 tokens (issue 18): 50 plain ``RyzeClient`` objects, one token each, on one
event loop, each fed by ``USERS`` tasks that place fake calls one after another (a user's
request at a time), all through real sockets (a fresh connection per call, the default) to
``FakeRyzeServer`` in another process on 127.0.0.1, at a sped-up quota of ``LIMIT`` calls per
``PERIOD`` s per token (5x RyzeAPI's 100 per 60 s). The run is made twice, once against a
fixed-window server and once against a sliding-window one (the client does not know which).

Reported per run: the server's 429s; ``max/window``: the most requests that reached the
server for one token in any window of the period (every arrival counted, refused or not),
sliding over the record, and ``fixed max`` in the server's fixed windows; ``sent max``: the
same over the instants each attempt passed its slot check (a hook, ``on_request_started``),
the client's side of the bound before connecting, writing and the server's own delay; loop
lag (a monitor task asks to wake every 5 ms and records how late it wakes: p50, p99, max;
``busy p99`` is the loop thread's own CPU over such a span, the part of the lag this process
caused, apart from CPU the OS gave other processes); the run's time against the ideal,
``(ceil(calls per token / LIMIT) - 1) * PERIOD``; the client process's CPU; the fake server's
own loop lag (a request it handles late is counted late, as if the network had delayed it);
and ``check->server``, the delay from passing the slot check to the server's count (per token,
the k-th check against the k-th arrival), which the margin's network half has to cover.

    python benchmarks/many_clients.py                          # full run, ~80 s on 2 cores
    python benchmarks/many_clients.py --speedup 1 --calls 150  # RyzeAPI's own pace, ~150 s
    python benchmarks/many_clients.py --pooled                 # kept-alive connections
    python benchmarks/many_clients.py --quick                  # CI smoke: 5 clients, ~8 s

Every mode checks, never timings: every call placed, each number once, no request refused,
no window over the limit. The full run also fails when loop-lag p99 is 20 ms or more. Exit 1
on a failed check. ``--quick`` uses a margin of 0.5 s so that a loaded CI host's stalls do not
decide its functional check.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import statistics
import sys
import time
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from _loopback import ServerProcess, answer_commands
from _report import finish, machine, ruled

CLIENTS = 50
LIMIT = 100
PERIOD = 12.0
CALLS = 250  # per token: two full windows and a half
USERS = 10  # tasks per client, each placing one call after another
TARGET_P99_MS = 20.0
PROBE = 0.005


def token(k: int) -> str:
    return f"bench-token-{k:04d}"


# -- the server process -----------------------------------------------------------------------

def serve(window: str, clients: int, limit: int, period: float, conn: Connection) -> None:
    asyncio.run(_serve(window, clients, limit, period, conn))


async def _serve(window: str, clients: int, limit: int, period: float, conn: Connection) -> None:
    from ryze_async.testing import FakeRyzeServer  # noqa: PLC0415 - server process only

    server = FakeRyzeServer(token=token(0), tokens=[token(k) for k in range(clients)],
                            instances=("bot",), rate_limit=limit, rate_period=period,
                            window=window)  # type: ignore[arg-type]
    await server.start()
    # The server's own loop lag: a request it handles late is counted late, as if the network
    # had delayed it; the client's margin covers only so much of that.
    lags: list[float] = []
    lag_task = asyncio.create_task(probe(lags, [], asyncio.Event()))

    def stats() -> dict[str, Any]:
        lag_task.cancel()
        lags.sort()
        arrivals: dict[str, list[float]] = defaultdict(list)
        for r in server.requests:
            arrivals[r.headers.get("token", "")].append(r.received_at)
        placed = [r.json["number"] for r in server.placed_calls if r.json]
        return {"refused": sum(1 for r in server.requests if r.status == 429),
                "placed": placed, "arrivals": dict(arrivals),
                "lag99": lags[int(len(lags) * 0.99)] * 1e3, "lagmax": lags[-1] * 1e3}

    await answer_commands(conn, server.url, stats, server.stop)


def most_in_window(times: list[float], period: float) -> tuple[int, int]:
    """(most arrivals in any ``period`` window sliding over them, most in one fixed window of
    the server, phase 0)."""
    times = sorted(times)
    # The server's sliding window at an arrival t holds the arrivals in (t - period, t].
    sliding = max((i - bisect_right(times, t - period, 0, i) + 1 for i, t in enumerate(times)),
                  default=0)
    fixed: dict[int, int] = defaultdict(int)
    for t in times:
        fixed[math.floor(t / period)] += 1
    return sliding, max(fixed.values(), default=0)


# -- the client process -----------------------------------------------------------------------

async def probe(lags: list[float], busy: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due, cpu = loop.time() + PROBE, time.thread_time()
        await asyncio.sleep(PROBE)
        lags.append(max(0.0, loop.time() - due))
        busy.append(time.thread_time() - cpu)


@dataclass(frozen=True)
class Quota:
    limit: int
    period: float
    calls: int  # per token
    margin: float | None  # None: the library's default


class Sends:
    """A client's hook: when each attempt was about to send its first byte (wall clock, as the
    server's record): the client's side of the bound, before the connect and the network."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_request_started(self, _: object) -> None:
        self.times.append(time.time())


async def run(url: str, clients: int, quota: Quota, keepalive: float) -> dict[str, Any]:
    import ryze_async._transports._aiohttp  # noqa: F401, PLC0415 - loaded before the probe
    from ryze_async import RyzeClient  # noqa: PLC0415

    sends = [Sends() for _ in range(clients)]
    bots = [RyzeClient(token(k), "bot", base_url=url, rate_limit=quota.limit,
                       rate_period=quota.period, rate_margin=quota.margin, hooks=sends[k],
                       keepalive_timeout=keepalive)
            for k in range(clients)]
    # Distinct, valid numbers: what a bot's users ask for.
    numbers = [[f"55119{k:02d}{i:06d}" for i in range(quota.calls)] for k in range(clients)]

    async def user(bot: RyzeClient, mine: list[str]) -> None:
        for number in mine:
            result = await bot.fake_call(number, duration=10)
            if not result.success:
                raise RuntimeError(f"not placed: {result!r}")

    lags: list[float] = []
    busy: list[float] = []
    stop = asyncio.Event()
    lag_task = asyncio.create_task(probe(lags, busy, stop))
    started, cpu = time.perf_counter(), time.process_time()
    try:
        async with asyncio.TaskGroup() as group:
            for bot, mine in zip(bots, numbers, strict=True):
                for u in range(USERS):
                    group.create_task(user(bot, mine[u::USERS]))
    finally:
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        stop.set()
        await lag_task
        for bot in bots:
            await bot.aclose()
    lags.sort()
    busy.sort()
    return {"wall": wall, "cpu": cpu / wall, "p50": statistics.median(lags) * 1e3,
            "p99": lags[int(len(lags) * 0.99)] * 1e3, "max": lags[-1] * 1e3,
            "busy99": busy[int(len(busy) * 0.99)] * 1e3,
            "sent": max(most_in_window(s.times, quota.period)[0] for s in sends),
            "sends": {token(k): s.times for k, s in enumerate(sends)},
            "numbers": {n for mine in numbers for n in mine}}


def after_check(sends: dict[str, list[float]], arrivals: dict[str, list[float]]) -> str:
    """p99/max of the delay from passing the slot check to the server's count, in ms: per
    token, the k-th check against the k-th arrival (order statistics: calls in flight together
    may swap places, so this bounds the delays rather than pairing each call)."""
    delays = sorted(arrived - sent for tok, times in sends.items()
                    for sent, arrived in zip(sorted(times), sorted(arrivals.get(tok, ())),
                                             strict=False))
    if not delays:
        return "-"
    return f"{delays[int(len(delays) * 0.99)] * 1e3:.0f}/{delays[-1] * 1e3:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="functional checks only")
    parser.add_argument("--clients", type=int, default=None, help=f"default {CLIENTS}")
    parser.add_argument("--speedup", type=float, default=60 / PERIOD,
                        help="the quota's period is 60 s / SPEEDUP (default 5)")
    parser.add_argument("--calls", type=int, default=CALLS, help=f"per token (default {CALLS})")
    parser.add_argument("--pooled", action="store_true",
                        help="kept-alive connections (keepalive_timeout=15), not one per call")
    args = parser.parse_args(argv)
    clients = args.clients or (5 if args.quick else CLIENTS)
    # --quick checks function on whatever host CI has: a margin that a loaded host's stalls
    # (tens of ms) do not eat. The full run keeps the library's default (0.2 s at 12 s).
    quota = (Quota(10, 1.0, 25, 0.5) if args.quick
             else Quota(LIMIT, 60 / args.speedup, args.calls, None))
    limit, period, calls = quota.limit, quota.period, quota.calls
    ideal = (math.ceil(calls / limit) - 1) * period
    began = time.perf_counter()
    print(machine(f"Python {platform.python_version()}",
                  f"{clients} clients on one loop, {USERS} users each, {calls} calls per token "
                  f"at {limit} per {period:g} s ({60 / period:g}x RyzeAPI's pace), "
                  "FakeRyzeServer in another process on 127.0.0.1, "
                  + ("kept-alive connections" if args.pooled else "a fresh connection per call")))
    lines = ruled(f"{'server':8} {'calls':>6} {'429s':>5} {'max/window':>10} {'fixed max':>9} "
                  f"{'sent max':>8} {'lag p50':>8} {'lag p99':>8} {'lag max':>8} {'busy p99':>8} "
                  f"{'time s':>7} {'x ideal':>7} {'CPU':>5} {'server lag p99/max':>18} "
                  f"{'check->server p99/max':>21}")
    failures: list[str] = []
    for window in ("fixed", "sliding"):
        server = ServerProcess(serve, window, clients, limit, period, name="fake server")
        try:
            r = asyncio.run(run(server.url, clients, quota, 15.0 if args.pooled else 0.0))
            stats = server.stats()
        finally:
            server.close()
        placed = stats["placed"]
        if len(placed) != len(r["numbers"]) or set(placed) != r["numbers"]:
            failures.append(f"{window}: the server did not place each number once")
        if stats["refused"]:
            failures.append(f"{window}: {stats['refused']} requests refused (429)")
        worst = [most_in_window(ts, period) for ts in stats["arrivals"].values()]
        sliding, fixed = max(w[0] for w in worst), max(w[1] for w in worst)
        if sliding > limit:
            failures.append(f"{window}: {sliding} requests of one token in one period")
        if not args.quick and r["p99"] >= TARGET_P99_MS:
            failures.append(f"{window}: loop lag p99 {r['p99']:.1f} ms >= {TARGET_P99_MS:g} ms")
        lines.append(f"{window:8} {len(placed):>6} {stats['refused']:>5} {sliding:>6}/{limit:<3} "
                     f"{fixed:>9} {r['sent']:>8} {r['p50']:>5.1f} ms {r['p99']:>5.1f} ms "
                     f"{r['max']:>5.1f} ms "
                     f"{r['busy99']:>5.1f} ms {r['wall']:>7.1f} {r['wall'] / ideal:>7.3f} "
                     f"{r['cpu']:>5.0%} {stats['lag99']:>6.1f}/{stats['lagmax']:>6.1f} ms "
                     f"{after_check(r['sends'], stats['arrivals']):>21}")
        print("\n".join(lines) if len(lines) == 3 else lines[-1], flush=True)
    print(f"ideal time: {ideal:g} s")
    return finish(began, args.quick, failures, "every call placed once, no 429, no window over "
                  "the limit", sep="; ")


if __name__ == "__main__":
    sys.exit(main())
