"""The lanes benchmark's second table: a bot and a campaign in two processes on one token,
sharing the Redis quota (``quota_url=``) of a real redis-server, in real time.

Process 1 is a campaign-like client (``priority="bulk"``) that keeps `QUEUE` bulk calls waiting
for the whole run; process 2 is a bot (interactive lane) whose users ask for a call at seeded
uniform(0, `BOT_GAP`) s gaps, each call its own task, and which reports each call's wait (from
asking to the call's return). Both talk to one `FakeRyzeServer` (sliding window, the quota's
limit) run here, whose record is the oracle: the most requests in any `PERIOD`, and the 429s.
Redis ``TIME`` is real, so the quota is scaled down to `LIMIT` calls per `PERIOD` s.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from dataclasses import dataclass
from pathlib import Path

from ryze_async.testing import FakeRyzeServer
from ryze_async.testing._quota_sim import max_in_window
from ryze_async.testing._shared_quota import (
    REDIS_SERVER,
    RedisServer,
    WorkerArgs,
    release_worker,
    start_worker,
    stop_worker,
    worker_report,
)

LIMIT, PERIOD = 20, 2.0
MARGIN = max(0.1, PERIOD / 60)  # the library's default margin (default_margin) for PERIOD
QUEUE = 2 * LIMIT  # the campaign's bulk calls waiting at all times: two windows of traffic
BOT_GAP = 3.0  # a bot user asks every uniform(0, 3) s: about 1.4 calls per window
RESERVE = 5
BOT_FIRST = 50_000_000  # the bot's numbers are 5511950000000 onwards; the campaign's 55119000...
MAX_RESERVED_P99 = 0.25 * PERIOD  # the full run's bound on the bot's p99 wait with the reserve
MAX_P99 = 1.2 * PERIOD  # the full run's bound on the bot's p99 wait without a reserve (issue 18)
MIN_RESERVED_BULK = 14.5  # calls per period the campaign places beside an idle reserve of 5


@dataclass(frozen=True)
class Setting:
    name: str
    reserve: int
    idle: bool = False  # the bot holds its reserve but places no call


SETTINGS = (
    Setting("bot, no reserve", 0),
    Setting(f"bot, interactive_reserve={RESERVE}", RESERVE),
    Setting(f"idle bot, interactive_reserve={RESERVE}", RESERVE, idle=True),
)


@dataclass(frozen=True)
class Result:
    waits: list[float]
    bad_statuses: int  # answers other than 200, in either process
    bulk_per_period: float  # while the bot ran
    worst_window: int  # the most requests the server received in any PERIOD
    refused: int  # 429s in the server's record


def missing() -> str | None:
    """Why the Redis table cannot run here, or None."""
    if not Path(REDIS_SERVER).exists():
        return "redis-server is not installed (apt install redis-server)"
    try:
        importlib.import_module("redis")
    except ImportError:
        return "the 'redis' package is missing (pip install \"ryze-async[redis]\")"
    return None


async def two_processes(redis_url: str, setting: Setting, seconds: float, quick: bool) -> Result:
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        common = ("redis", redis_url, server.url, "unused", LIMIT, PERIOD, MARGIN)
        campaign_args = WorkerArgs(*common, QUEUE, priority="bulk",
                                   duration=seconds + 300)  # a bound: stop_worker ends it
        # An idle bot is a worker with an empty campaign queue: it announces its reserve and
        # waits for the duration.
        bot_args = WorkerArgs(*common, 0, reserve=setting.reserve, first=BOT_FIRST,
                              duration=seconds, gap=0.0 if setting.idle else BOT_GAP, seed=11)
        # Both load at once; the bot's reserve is announced once it is ready, before the
        # campaign queues anything.
        bot, campaign = await asyncio.gather(asyncio.to_thread(start_worker, bot_args),
                                             asyncio.to_thread(start_worker, campaign_args))
        try:
            release_worker(campaign)
            # The campaign's first window was sent: every one of its QUEUE calls has sent or
            # reserved a slot, so the token is saturated from here on.
            await asyncio.wait_for(server.wait_for_requests(LIMIT - setting.reserve), 30)
            began = time.time()
            release_worker(bot)
            if quick:  # short: the campaign ends with the bot's last question, not its answer
                asyncio.get_running_loop().call_later(seconds, stop_worker, campaign)
            if setting.idle:  # its report would close its stdin, which stops it at once
                await asyncio.sleep(seconds)
            report = await asyncio.to_thread(worker_report, bot, timeout=seconds + 300)
            ended = time.time()
        finally:
            stop_worker(campaign)
            bulk_statuses = await asyncio.to_thread(worker_report, campaign)
            bot.kill()  # only if it failed: a bot that reported has exited
        record = list(server.requests)
    statuses = report["statuses"] + bulk_statuses["statuses"]
    bulk = [r for r in record if b"551195" not in r.body and began <= r.received_at <= ended]
    return Result(
        waits=report.get("waits", []),
        bad_statuses=sum(status != 200 for status in statuses),
        bulk_per_period=len(bulk) * PERIOD / (ended - began),
        worst_window=max_in_window([r.received_at for r in record], PERIOD),
        refused=sum(r.status == 429 for r in record),
    )


def run(seconds: float, quick: bool) -> dict[str, Result]:
    with RedisServer() as redis_server:
        return {s.name: asyncio.run(two_processes(redis_server.url, s, seconds, quick))
                for s in SETTINGS}
