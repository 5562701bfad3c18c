"""(#15) The sandbox as a test bench: ``ryze-async sandbox --window sliding --record FILE``
writes what it received as JSON Lines while it runs; a campaign's journal is checked against it.
A real sandbox process; its record file is the oracle."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from ryze_async.testing._quota_sim import max_in_window

from .cli_helpers import run_cli

pytestmark = pytest.mark.infra

PIPE = asyncio.subprocess.PIPE
LIMIT, PERIOD = 5, 1.0


async def test_a_campaign_checked_against_the_sandbox_s_record(tmp_path: Path) -> None:
    record = tmp_path / "received.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RYZE_")}
    sandbox = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ryze_async", "sandbox", "--port", "0", "--window", "sliding",
        "--rate-limit", str(LIMIT), "--rate-period", str(PERIOD), "--record", str(record),
        env=env, stdout=PIPE, stderr=PIPE)
    try:
        assert sandbox.stdout is not None
        first = (await asyncio.wait_for(sandbox.stdout.readline(), 30)).decode()
        assert "sliding" in first
        url = first.split(" on ")[1].split()[0]
        numbers = [f"55119{i:08d}" for i in range(12)]
        csv = tmp_path / "numbers.csv"
        csv.write_text("number\n" + "\n".join(numbers) + "\n", encoding="utf-8")
        code, _, err = await run_cli(
            ["campaign", str(csv), "--journal", str(tmp_path / "j.db"), "--fake",
             "--rate-limit", str(LIMIT), "--rate-period", str(PERIOD)],
            {"RYZE_TOKEN": "sandbox-token", "RYZE_INSTANCE": "sandbox", "RYZE_BASE_URL": url})
        assert code == 0, err
        # Read while the sandbox still runs: every answer is on disk before it is sent.
        lines = record.read_text(encoding="utf-8").splitlines()
        assert sandbox.returncode is None
    finally:
        if sandbox.returncode is None:
            sandbox.send_signal(signal.SIGINT)
        await asyncio.wait_for(sandbox.communicate(), 30)
    assert sandbox.returncode == 0
    seen = [json.loads(line) for line in lines]
    assert all(set(r) == {"time", "number", "instance", "status", "route"} for r in seen)
    assert "sandbox-token" not in record.read_text(encoding="utf-8")
    calls = [r for r in seen if r["route"] == "fake"]
    assert {r["instance"] for r in calls} == {"sandbox"}
    conn = sqlite3.connect(tmp_path / "j.db")
    try:
        journal = dict(conn.execute("SELECT number, state FROM numbers WHERE valid"))
        attempts = sum(n for (n,) in conn.execute("SELECT attempts FROM numbers WHERE valid"))
    finally:
        conn.close()
    placed = sorted(n for n, state in journal.items() if state == "placed")
    assert placed == sorted(numbers)
    assert sorted(r["number"] for r in calls if r["status"] == 200) == placed
    assert len(calls) == attempts  # every attempt the journal counts reached the sandbox
    times = [datetime.datetime.fromisoformat(r["time"]).timestamp() for r in calls
             if r["status"] == 200]
    assert max_in_window(times, PERIOD) <= LIMIT
