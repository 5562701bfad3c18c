"""Wiring the PostgreSQL journal into campaigns (#9): the target picks the store, a claim lost
to another worker skips the row (nothing sent, the run goes on), a shared store is asked for
no more rows than the workers can start soon, and a database URL's password is never shown.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ryze_async import CallResult, Campaign, ClaimLostError, JournalError, Media
from ryze_async._campaign.journal import Journal, describe, open_journal
from ryze_async.testing import wav_tone

from .cli_helpers import run_cli

MEDIA = Media.from_bytes(wav_tone(0.1))
Hook = Callable[[], Awaitable[None]]
NUMBERS = [f"55119111100{i:02d}" for i in range(6)]


class Sent:
    """A client stub: a call is "sent" once ``before_send`` returned."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.sent: list[str] = []
        self.gate = gate
        self.two_sent = asyncio.Event()

    async def audio_call(self, number: str, *, media: Media, instance: str | None,
                         before_send: Hook, on_not_sent: Hook | None = None) -> CallResult:
        await before_send()
        self.sent.append(number)
        if len(self.sent) >= 2:
            self.two_sent.set()
        if self.gate is not None:
            await self.gate.wait()
        return CallResult(success=True, callId=f"C-{number}", number=number)

    async def fake_call(self, number: str, **kwargs: Any) -> CallResult:
        raise AssertionError("not a fake-call campaign")


async def test_a_lost_claim_skips_the_row_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Journal.mark_sending
    lost: list[int] = []

    async def mark_sending(self: Journal, row_id: int, *, sender: str | None = None) -> None:
        if row_id == 2:  # another worker holds it now
            lost.append(row_id)
            raise ClaimLostError("row 2 is no longer held by this worker: not sending")
        await real(self, row_id)

    monkeypatch.setattr(Journal, "mark_sending", mark_sending)
    client = Sent()
    summary = await Campaign(client, NUMBERS, journal=tmp_path / "j.db", media=MEDIA,
                             concurrency=1, max_requeues=0).run()
    assert lost == [2]
    assert "+" + NUMBERS[1] not in client.sent
    assert len(client.sent) == 5
    assert summary.stop_reason == "completed"
    assert (summary.placed, summary.pending, summary.unknown) == (5, 1, 0)


async def test_a_shared_store_is_asked_for_what_the_workers_can_start(
    pg_dsn: str, tmp_path: Path
) -> None:
    import asyncpg

    name = f"w-{uuid.uuid4().hex[:10]}"
    gate = asyncio.Event()
    client = Sent(gate)
    numbers = [f"55119222{i:05d}" for i in range(300)]
    campaign = Campaign(client, numbers, journal=pg_dsn, campaign=name, media=MEDIA,
                        concurrency=2)
    run = asyncio.create_task(campaign.run())
    conn = await asyncpg.connect(pg_dsn)
    try:
        await client.two_sent.wait()
        # The feeder claims before a worker can send; this settle only gives a hoarding
        # feeder more time to show itself (it cannot make the assertion pass).
        await asyncio.sleep(0.2)
        held = await conn.fetchval(
            "SELECT count(*) FROM ryze_numbers WHERE campaign = $1 AND state IN "
            "('claimed', 'sending')", name)
        # Two calls in flight, two waiting in the queue, no hoard other workers cannot take.
        assert 2 <= held <= 4
    finally:
        gate.set()
        await conn.close()
    summary = await run
    assert summary.placed == 300


async def test_postgres_target_needs_a_campaign_and_a_file_refuses_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="campaign="):
        Campaign(Sent(), NUMBERS, journal="postgresql://u@127.0.0.1:1/db", media=MEDIA)
    with pytest.raises(ValueError, match="campaign="):
        Campaign(Sent(), NUMBERS, journal=tmp_path / "j.db", campaign="x", media=MEDIA)
    with pytest.raises(JournalError, match="--campaign"):
        await open_journal("postgres://u:pw@127.0.0.1:1/db")


@pytest.mark.parametrize("args", [
    ["campaign", "n.csv", "--fake", "--journal", "postgresql://u:topsecretpw@127.0.0.1:1/d"],
    ["report", "postgresql://u:topsecretpw@127.0.0.1:1/d"],
    ["campaign", "n.csv", "--fake", "--journal", "j.db", "--campaign", "x"],
    ["report", "j.db", "--campaign", "x"],
])
async def test_campaign_option_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "n.csv").write_text("number\n5511911110000\n")
    args = [str(tmp_path / a) if a in ("n.csv", "j.db") else a for a in args]
    code, out, err = await run_cli(args, {"RYZE_TOKEN": "t", "RYZE_INSTANCE": "i"})
    assert code == 2
    assert "--campaign" in err
    assert "topsecretpw" not in out + err


async def test_unreachable_database_exits_2_without_the_password(tmp_path: Path) -> None:
    code, out, err = await run_cli(
        ["report", "postgresql://u:topsecretpw@127.0.0.1:1/d", "--campaign", "x"], {})
    assert code == 2
    assert "postgresql://u@127.0.0.1:1/d" in err
    assert "topsecretpw" not in out + err


def test_describe_never_shows_a_password() -> None:
    assert describe("postgresql://me:pw@db.example:5433/x?sslmode=require&password=pw") == (
        "postgresql://me@db.example:5433/x")
    assert describe("postgres://me:pw@db:notaport/x") == "postgres://me@db:?/x"  # the one shown_url
    assert describe(Path("a/b.db")) == "a/b.db"


@pytest.mark.infra
def test_without_asyncpg_a_clear_error_names_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['asyncpg'] = None\n"
            "from ryze_async._cli import main\n"
            "sys.exit(main(['report', 'postgresql://u@127.0.0.1:1/d', '--campaign', 'x']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert 'pip install "ryze-async[postgres]"' in done.stderr


async def test_a_changed_input_begins_a_pass_from_the_position_it_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers that see the same edit start one pass: the store is told what was read."""
    numbers_csv = tmp_path / "n.csv"
    numbers_csv.write_text("number\n" + "\n".join(NUMBERS[:3]) + "\n")
    await Campaign(Sent(), numbers_csv, journal=tmp_path / "j.db", media=MEDIA).run()
    async with await Journal.open(tmp_path / "j.db") as journal:
        stored = await journal.ingest_position()
    seen: list[object] = []
    real = Journal.begin_pass

    async def begin_pass(self: Journal, expected: tuple[int, int, str] | None = None) -> bool:
        seen.append(expected)
        return await real(self, expected)

    monkeypatch.setattr(Journal, "begin_pass", begin_pass)
    numbers_csv.write_text("number\n" + "\n".join(NUMBERS[1:]) + "\n")  # edited, not appended
    await Campaign(Sent(), numbers_csv, journal=tmp_path / "j.db", media=MEDIA).run()
    assert seen == [stored]


@pytest.mark.infra
def test_asyncpg_is_imported_only_for_a_postgres_journal(tmp_path: Path) -> None:
    code = ("import asyncio, sys\n"
            "from ryze_async._campaign.journal import open_journal\n"
            "async def main():\n"
            "    j = await open_journal('j.db')\n"
            "    await j.close()\n"
            "asyncio.run(main())\n"
            "assert 'asyncpg' not in sys.modules, 'asyncpg imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
