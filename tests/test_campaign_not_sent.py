"""A call the server refused (429) or that was never sent goes back to ``pending`` at once (#7.7).

The client awaits ``on_not_sent`` before it waits out a 429 or backs off between connection
retries, and ``before_send`` before every attempt. A stub client plays those hooks here; the
journal, read by an independent connection, is the oracle.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ryze_async import CallResult, Campaign, Media
from ryze_async.testing import wav_tone

MEDIA = Media.from_bytes(wav_tone(0.1))
Hook = Callable[[], Awaitable[None]]


def states(journal: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT number, state FROM numbers WHERE valid = 1"))
    finally:
        conn.close()


class RefusedOnce:
    """Each call: attempt 1 refused (on_not_sent), then waits on ``release``; attempt 2 placed."""

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()
        self.seen_while_waiting: dict[str, str] = {}
        self.sent: list[str] = []

    async def audio_call(self, number: str, *, media: Media, instance: str | None,
                         before_send: Hook, on_not_sent: Hook | None = None) -> CallResult:
        await before_send()
        assert on_not_sent is not None
        await on_not_sent()  # 429: refused, about to wait for the reset
        self.seen_while_waiting[number] = states(self.journal)[number]
        self.waiting.set()
        await self.release.wait()
        await before_send()
        self.sent.append(number)
        return CallResult(success=True, callId=f"C-{number}", number=number)

    async def fake_call(self, number: str, **kwargs: Any) -> CallResult:
        raise AssertionError("not a fake-call campaign")


async def test_a_refused_call_is_pending_while_waiting_and_sending_again_after(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "j.db"
    client = RefusedOnce(journal)
    client.release.set()
    summary = await Campaign(client, ["5511911110001", "5511911110002"], journal=journal,
                             media=MEDIA, concurrency=1).run()
    assert client.seen_while_waiting == {"5511911110001": "pending",
                                         "5511911110002": "pending"}
    assert (summary.placed, summary.pending, summary.unknown) == (2, 0, 0)
    assert set(states(journal).values()) == {"placed"}


async def test_a_stop_during_the_wait_leaves_the_number_pending(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    client = RefusedOnce(journal)
    campaign = Campaign(client, ["5511911110001"], journal=journal, media=MEDIA,
                        concurrency=1, drain_timeout=60)
    run = asyncio.create_task(campaign.run())
    await asyncio.wait_for(client.waiting.wait(), 10)
    campaign.stop()  # the worker is waiting, not sending: cancelled at once, no drain
    summary = await asyncio.wait_for(run, 10)
    assert (summary.pending, summary.unknown, summary.placed) == (1, 0, 0)
    assert states(journal) == {"5511911110001": "pending"}
    assert client.sent == []


async def test_a_campaign_says_when_its_calls_wait_for_quota(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    client = RefusedOnce(journal)
    campaign = Campaign(client, ["5511911110001"], journal=journal, media=MEDIA, concurrency=1)
    assert not campaign.waiting_for_quota
    run = asyncio.create_task(campaign.run())
    await asyncio.wait_for(client.waiting.wait(), 10)
    assert campaign.waiting_for_quota  # refused, back to pending, waiting for the reset
    client.release.set()
    summary = await asyncio.wait_for(run, 10)
    assert summary.placed == 1
