"""#7.1 under kill -9: a campaign killed mid-run, its CSV edited, and started again with the same
command calls nobody twice and nobody outside the file (the fake server's record says so)."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ryze_async import normalize_number
from ryze_async.testing import FakeRyzeServer, Fault, wav_tone

from .test_cli import PIPE, TOKEN, campaign_cmd, env_for, journal_states, run, until
from .test_input_edits import EDITS, fmt, write_csv

pytestmark = pytest.mark.infra  # kill -9 of a real CLI process

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
ROWS = [fmt(i) for i in range(1, 201)]


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(token=TOKEN, rate_limit=None)


@pytest.mark.parametrize("edit", sorted(EDITS))
async def test_sigkill_edit_the_csv_then_resume(
    server: FakeRyzeServer, tmp_path: Path, edit: str
) -> None:
    numbers_csv, journal = tmp_path / "numbers.csv", tmp_path / "campaign.db"
    audio = tmp_path / "message.wav"
    audio.write_bytes(wav_tone(0.1))
    first_file = write_csv(numbers_csv, ROWS)
    cmd = campaign_cmd(numbers_csv, audio, journal, "--concurrency", "1")
    proc = await asyncio.create_subprocess_exec(*cmd, env=env_for(server), stdout=PIPE,
                                                stderr=PIPE)
    await server.wait_for_requests(5)
    server.fail_next(Fault.HANG, times=1)

    async def stuck() -> bool:
        if not any(r.status is None for r in server.requests):
            return False
        states = Counter((await asyncio.to_thread(journal_states, journal)).values())
        return states["sending"] == 1 and states["placed"] == len(server.placed_calls)

    await until(stuck, "a call hung in flight")
    proc.kill()
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    run1 = [r.json["number"] for r in server.requests]
    assert set(run1) <= first_file

    second_file = write_csv(numbers_csv, EDITS[edit](ROWS))
    code, _, err = await run(cmd, env_for(server))
    assert code == 1, err  # the hung call is unknown
    run2 = [r.json["number"] for r in server.requests][len(run1):]
    assert set(run2) <= second_file, f"called outside the file: {set(run2) - second_file}"
    assert all(n == 1 for n in Counter(run1 + run2).values()), "someone was called twice"
    assert second_file <= set(run1) | set(run2), "a number of the file was never dealt with"
    states = journal_states(journal)
    assert all(states[n] in ("placed", "unknown") for n in second_file)
    assert {n for n, s in states.items() if s == "skipped"} == first_file - second_file - set(
        run1)
    assert normalize_number(ROWS[0]) in states
