"""The ``ryze-async`` command line, run as a real subprocess against the fake server.

The kill -9 test is the campaign's central promise: a run killed mid-flight and started again
with the same command calls nobody twice, and the calls in flight at the kill end ``unknown``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ryze_async.testing import FakeRyzeServer, Fault, wav_tone

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
TOKEN = "s3cr3t-token-VALUE-never-printed"
PIPE = asyncio.subprocess.PIPE


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(token=TOKEN, rate_limit=None)


def numbers(count: int) -> list[str]:
    return [f"55119{i:08d}" for i in range(count)]


def env_for(server: FakeRyzeServer | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RYZE_")}
    if server is not None:
        env.update(RYZE_TOKEN=TOKEN, RYZE_INSTANCE="my-instance", RYZE_BASE_URL=server.url)
    env.update(extra)
    return env


def write_inputs(tmp_path: Path, valid: list[str]) -> tuple[Path, Path]:
    numbers_csv = tmp_path / "numbers.csv"
    rows = ["number,name", "# a comment", *(f"{n},Person" for n in valid),
            f"{valid[0]},Again", "12345,Short", ""]
    numbers_csv.write_text("\n".join(rows) + "\n")
    audio = tmp_path / "message.wav"
    audio.write_bytes(wav_tone(0.1))
    return numbers_csv, audio


def campaign_cmd(numbers_csv: Path, audio: Path, journal: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ryze_async", "campaign", str(numbers_csv), "--media",
            str(audio), "--journal", str(journal), "--rate-limit", "100000", "--rate-period",
            "1", "--json", *extra]


async def run(cmd: list[str], env: dict[str, str], *, subprocess: bool = False) -> tuple[
    int, str, str
]:
    """Run ``cmd`` (``python -m ryze_async ...``): in this process unless ``subprocess``."""
    if subprocess:
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=PIPE, stderr=PIPE)
        out_bytes, err_bytes = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        code, out, err = proc.returncode, out_bytes.decode(), err_bytes.decode()
    else:
        assert cmd[:3] == [sys.executable, "-m", "ryze_async"]
        code, out, err = await run_cli(cmd[3:], env)
    assert TOKEN not in out + err
    return code, out, err


def last_json(stdout: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return data


def journal_states(journal: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT number, state FROM numbers WHERE valid = 1"))
    finally:
        conn.close()


async def until(condition: Callable[[], Awaitable[bool]], what: str, limit: float = 30) -> None:
    """Poll a condition on real records (server, journal) until it holds."""
    deadline = time.monotonic() + limit
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.mark.infra
async def test_sigkill_mid_run_then_resume_calls_nobody_twice(
    server: FakeRyzeServer, tmp_path: Path
) -> None:
    valid = numbers(200)
    numbers_csv, audio = write_inputs(tmp_path, valid)
    journal = tmp_path / "campaign.db"
    cmd = campaign_cmd(numbers_csv, audio, journal, "--concurrency", "2")
    proc = await asyncio.create_subprocess_exec(*cmd, env=env_for(server), stdout=PIPE,
                                                stderr=PIPE)
    await server.wait_for_requests(30)
    server.fail_next(Fault.HANG, times=2)

    async def stuck() -> bool:
        # Both workers hang in flight, and every answered call's outcome is committed.
        if sum(r.status is None for r in server.requests) < 2:
            return False
        states = Counter((await asyncio.to_thread(journal_states, journal)).values())
        return states["sending"] == 2 and states["placed"] == len(server.placed_calls)

    await until(stuck, "two calls hung in flight")
    proc.kill()
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    hung = {r.json["number"] for r in server.requests if r.status is None}
    placed_before = {r.json["number"] for r in server.placed_calls}
    assert len(hung) == 2
    assert len(placed_before) >= 30

    code, out, err = await run(cmd, env_for(server))
    assert code == 1  # some numbers are unknown
    summary = last_json(out)
    assert (summary["total"], summary["skipped"], summary["pending"]) == (202, 2, 0)
    assert (summary["placed"], summary["unknown"], summary["failed"]) == (198, 2, 0)
    assert "2 numbers were in flight" in err
    # The server's own record: every valid number reached it exactly once, hung ones included.
    assert Counter(r.json["number"] for r in server.requests) == Counter(valid)
    states = journal_states(journal)
    assert {n for n, s in states.items() if s == "unknown"} == hung
    assert {n for n, s in states.items() if s == "placed"} == set(valid) - hung
    assert not placed_before & hung


@pytest.mark.infra
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_interrupt_stops_taking_numbers_and_exits_130(
    server: FakeRyzeServer, tmp_path: Path, signum: signal.Signals
) -> None:
    numbers_csv, audio = write_inputs(tmp_path, numbers(50))
    journal = tmp_path / "campaign.db"
    server.fail_next(Fault.HANG, times=2)
    proc = await asyncio.create_subprocess_exec(
        *campaign_cmd(numbers_csv, audio, journal, "--concurrency", "2", "--drain-timeout",
                      "0.3"), env=env_for(server), stdout=PIPE, stderr=PIPE)
    await server.wait_for_requests(2)
    proc.send_signal(signum)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 130, err
    summary = last_json(out.decode())
    assert summary["stop_reason"] == "interrupted"
    assert (summary["unknown"], summary["pending"], summary["placed"]) == (2, 48, 0)
    assert "stopping" in err.decode()
    assert len(server.requests) == 2


@pytest.mark.infra
async def test_second_sigint_aborts_without_waiting(
    server: FakeRyzeServer, tmp_path: Path
) -> None:
    numbers_csv, audio = write_inputs(tmp_path, numbers(20))
    server.fail_next(Fault.HANG, times=2)
    proc = await asyncio.create_subprocess_exec(
        *campaign_cmd(numbers_csv, audio, tmp_path / "j.db", "--concurrency", "2",
                      "--drain-timeout", "3600"), env=env_for(server), stdout=PIPE, stderr=PIPE)
    await server.wait_for_requests(2)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    while b"stopping" not in await asyncio.wait_for(proc.stderr.readline(), 30):
        pass
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130
    summary = last_json(out.decode())
    assert (summary["stop_reason"], summary["unknown"], summary["pending"]) == ("aborted", 2, 18)


async def test_campaign_exit_codes_json_and_plain_progress(
    server: FakeRyzeServer, tmp_path: Path
) -> None:
    numbers_csv, audio = write_inputs(tmp_path, numbers(40))
    journal = tmp_path / "j.db"
    cmd = campaign_cmd(numbers_csv, audio, journal)

    no_token = env_for(server)
    del no_token["RYZE_TOKEN"]
    code, out, err = await run(cmd, no_token)
    assert code == 2
    assert "no token" in err
    code, out, err = await run(cmd, env_for(None))
    assert code == 2
    assert "no instance" in err

    code, out, err = await run(cmd, env_for(server, RYZE_TOKEN="wrong-token"))
    assert code == 3
    assert "circuit breaker" in err
    assert last_json(out)["stop_reason"] == "circuit_breaker"
    assert last_json(out)["pending"] == 40

    code, out, err = await run(cmd, env_for(server))
    assert code == 0, err
    summary = last_json(out)
    assert (summary["placed"], summary["skipped"], summary["total"]) == (40, 2, 42)
    assert any(line.split()[1:2] == ["progress"] for line in out.splitlines())
    assert "\x1b[" not in out  # not a terminal: plain lines, no escape codes

    other_audio = tmp_path / "other.wav"
    other_audio.write_bytes(wav_tone(0.3))
    code, _, err = await run(campaign_cmd(numbers_csv, other_audio, journal), env_for(server))
    assert code == 2
    assert "different campaign" in err


async def test_report_prints_the_summary_and_exports_csv(
    server: FakeRyzeServer, tmp_path: Path
) -> None:
    numbers_csv, audio = write_inputs(tmp_path, numbers(10))
    journal = tmp_path / "j.db"
    server.fail_next(Fault.SERVER_ERROR)
    code, _, _ = await run(campaign_cmd(numbers_csv, audio, journal, "--concurrency", "1"),
                           env_for(server))
    assert code == 1
    out_csv = tmp_path / "report.csv"
    code, out, err = await run([sys.executable, "-m", "ryze_async", "report", str(journal),
                                "--csv", str(out_csv), "--json"], env_for(None))
    assert code == 0
    summary = json.loads(out)
    assert (summary["placed"], summary["failed"], summary["skipped"]) == (9, 1, 2)
    assert "wrote 11 rows" in err
    with out_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert Counter(r["state"] for r in rows) == Counter({"placed": 9, "failed": 1, "invalid": 1})
    assert (out_csv.stat().st_mode & 0o777) == 0o600

    code, _, err = await run([sys.executable, "-m", "ryze_async", "report",
                              str(tmp_path / "missing.db")], env_for(None))
    assert code == 2
    assert "no journal" in err


@pytest.mark.infra
async def test_call_and_fake_call(server: FakeRyzeServer, tmp_path: Path) -> None:
    audio = tmp_path / "m.wav"
    audio.write_bytes(wav_tone(0.1))
    base = [sys.executable, "-m", "ryze_async"]
    # Once through a real `python -m ryze_async`: the entry point itself.
    code, out, _ = await run([*base, "call", "+55 11 90000-0001", "--media", str(audio),
                              "--json"], env_for(server), subprocess=True)
    assert code == 0
    assert json.loads(out)["number"] == "5511900000001"
    code, out, _ = await run([*base, "fake-call", "5511900000002", "--duration", "5"],
                             env_for(server))
    assert code == 0
    assert out.startswith("placed:")
    assert server.requests[-1].json == {"number": "5511900000002", "duration": 5}
    code, _, err = await run([*base, "fake-call", "123"], env_for(server))
    assert code == 2
    assert "not a phone number" in err
    server.fail_next(Fault.DROP_AFTER_READ)
    code, _, err = await run([*base, "fake-call", "5511900000003"], env_for(server))
    assert code == 1
    assert "outcome unknown" in err


async def test_demo_runs_offline_against_its_own_sandbox(tmp_path: Path) -> None:
    # RYZE_* point at a closed loopback port: the demo must ignore them entirely.
    env = env_for(None, RYZE_TOKEN="not-the-demo-token", RYZE_BASE_URL="http://127.0.0.1:9",
                  RYZE_INSTANCE="nope")
    code, out, err = await run([sys.executable, "-m", "ryze_async", "demo", "--numbers", "40",
                                "--rate-limit", "1000", "--rate-period", "1", "--dir",
                                str(tmp_path), "--json"], env)
    assert code == 0, err
    summary = last_json(out)
    assert (summary["placed"], summary["duplicates"], summary["invalid"]) == (40, 5, 3)
    assert "40 calls placed, 40 distinct numbers" in out
    assert (tmp_path / "demo-journal.db").exists()


@pytest.mark.infra
async def test_sandbox_serves_the_cli_until_sigint(tmp_path: Path) -> None:
    sandbox = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ryze_async", "sandbox", "--port", "0", env=env_for(None),
        stdout=PIPE, stderr=PIPE)
    assert sandbox.stdout is not None
    first = (await asyncio.wait_for(sandbox.stdout.readline(), 30)).decode()
    url = first.split(" on ")[1].split()[0]
    assert url.startswith("http://127.0.0.1:")
    env = env_for(None, RYZE_TOKEN="sandbox-token", RYZE_INSTANCE="sandbox", RYZE_BASE_URL=url)
    code, _, err = await run_cli(["fake-call", "5511900000001"], env)
    assert code == 0, err
    sandbox.send_signal(signal.SIGINT)
    rest, _ = await asyncio.wait_for(sandbox.communicate(), 30)
    assert sandbox.returncode == 0
    assert "1 calls placed" in rest.decode()
