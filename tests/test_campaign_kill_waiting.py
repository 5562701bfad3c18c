"""SIGKILL while the client waits to resend a refused or never-sent call (#7.7).

The number must already be ``pending`` in the journal when the process dies, so the next run
calls it (once), instead of ``unknown`` (never called). Killed during a 429 wait (the CLI
against a server whose window is spent for ten minutes) and during a connect-retry backoff
(a server refusing connections, a ten-minute backoff); the servers' records are the oracle.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ryze_async import Campaign, RyzeClient
from ryze_async.testing import FakeRyzeServer, Fault, wav_tone

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
pytestmark = pytest.mark.infra  # every test kills a real campaign process

TOKEN = "kill-test-token-VALUE"
PIPE = asyncio.subprocess.PIPE
NUMBERS = ["5511911110001", "5511911110002", "5511911110003"]

DRIVER = """
import asyncio, json, sys
from ryze_async import RyzeClient
from ryze_async._campaign import Campaign

async def main() -> None:
    o = json.loads(sys.argv[1])
    async with RyzeClient(token=o["token"], instance="my-instance", base_url=o["url"],
                          rate_limit=None, backoff_initial=o["backoff"],
                          backoff_max=o["backoff"]) as client:
        s = await Campaign(client, o["numbers"], journal=o["journal"], fake=True,
                           concurrency=1).run()
    print(json.dumps({"placed": s.placed, "pending": s.pending, "unknown": s.unknown}))

asyncio.run(main())
"""


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RYZE_")}
    clean["RYZE_TOKEN"] = TOKEN
    return clean


def rows(journal: Path) -> dict[str, tuple[str, int]]:
    if not journal.exists():
        return {}
    conn = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {n: (s, a) for n, s, a in conn.execute(
            "SELECT number, state, attempts FROM numbers WHERE valid = 1")}
    except sqlite3.OperationalError:  # not created yet
        return {}
    finally:
        conn.close()


async def until_pending_after_an_attempt(journal: Path, number: str, limit: float) -> None:
    """Poll the journal until ``number`` was attempted and is back to pending (bounded)."""
    deadline = time.monotonic() + limit
    while True:
        state = (await asyncio.to_thread(rows, journal)).get(number)
        if state is not None and state[0] == "pending" and state[1] >= 1:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{number} is not pending after an attempt: {rows(journal)}")
        await asyncio.sleep(0.05)


async def kill(proc: asyncio.subprocess.Process) -> None:
    proc.kill()
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL


def placed(*servers: FakeRyzeServer) -> Counter[str]:
    return Counter(r.json["number"] for s in servers for r in s.placed_calls)


async def test_sigkill_during_a_429_wait_leaves_the_number_pending(
    ryze_server_factory: ServerFactory, tmp_path: Path
) -> None:
    spent = await ryze_server_factory(token=TOKEN, rate_limit=1000, rate_period=600)
    spent.fail_next(Fault.RATE_LIMITED)  # a 429 whose reset is ten minutes away
    numbers_csv = tmp_path / "numbers.csv"
    numbers_csv.write_text("number\n" + "\n".join(NUMBERS) + "\n")
    audio = tmp_path / "message.wav"
    audio.write_bytes(wav_tone(0.1))
    journal = tmp_path / "campaign.db"

    def cmd(url: str) -> list[str]:
        # The client's own limiter is out of the way: the server's 429 is what it waits for.
        return [sys.executable, "-m", "ryze_async", "campaign", str(numbers_csv), "--media",
                str(audio), "--journal", str(journal), "--instance", "my-instance",
                "--base-url", url, "--rate-limit", "100000", "--rate-period", "600",
                "--concurrency", "1", "--json"]

    proc = await asyncio.create_subprocess_exec(*cmd(spent.url), env=env(), stdout=PIPE,
                                                stderr=PIPE)
    try:
        await until_pending_after_an_attempt(journal, NUMBERS[0], 20)
        assert [r.status for r in spent.requests] == [429]
    finally:
        await kill(proc)
    assert {n: s for n, (s, _) in rows(journal).items()} == dict.fromkeys(NUMBERS, "pending")

    fresh = await ryze_server_factory(token=TOKEN, rate_limit=None)
    # The rerun needs no kill: the same command, in-process (no interpreter start-up).
    code, out, err = await run_cli(cmd(fresh.url)[3:], {"RYZE_TOKEN": TOKEN})
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["placed"] == 3
    assert placed(spent, fresh) == Counter(NUMBERS)


async def test_sigkill_during_a_connect_retry_backoff_leaves_the_number_pending(
    ryze_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = await ryze_server_factory(token=TOKEN, rate_limit=None)
    await server.refuse_connections()
    journal = tmp_path / "campaign.db"

    def cmd(backoff: float) -> list[str]:
        options = {"token": TOKEN, "url": server.url, "backoff": backoff,
                   "numbers": NUMBERS, "journal": str(journal)}
        return [sys.executable, "-c", DRIVER, json.dumps(options)]

    proc = await asyncio.create_subprocess_exec(*cmd(600), env=env(), stdout=PIPE,
                                                stderr=PIPE)
    try:
        await until_pending_after_an_attempt(journal, NUMBERS[0], 20)
    finally:
        await kill(proc)
    assert {n: s for n, (s, _) in rows(journal).items()} == dict.fromkeys(NUMBERS, "pending")
    assert server.requests == []

    await server.accept_connections()
    # The rerun needs no kill: the driver's code, in-process.
    async with RyzeClient(token=TOKEN, instance="my-instance", base_url=server.url,
                          rate_limit=None, backoff_initial=0.01, backoff_max=0.01) as client:
        s = await Campaign(client, NUMBERS, journal=journal, fake=True, concurrency=1).run()
    assert (s.placed, s.pending, s.unknown) == (3, 0, 0)
    assert placed(server) == Counter(NUMBERS)
