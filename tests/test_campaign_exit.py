"""Leaving the outcome loop, however it happens, stops dialing and releases the journal (#7.4).

The oracle is the fake server's own record: after the loop is left, no request may reach it
beyond the calls already in flight at that moment (at most ``concurrency``), and the journal
must open again in the same process once the run has wound down.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ryze_async import Campaign, JournalError, Media, RyzeClient
from ryze_async._campaign.journal import CampaignIdentity, Journal
from ryze_async.testing import FakeRyzeServer, run_virtual, wav_tone

MEDIA = Media.from_bytes(wav_tone(0.1))
CONCURRENCY = 4


def numbers(count: int) -> list[str]:
    return [f"55119{i:08d}" for i in range(count)]


async def journal_opens(path: Path) -> bool:
    identity = CampaignIdentity("audio", MEDIA.fingerprint, "my-instance")
    try:
        journal = await Journal.open(path, identity=identity)
    except JournalError:
        return False
    await journal.close()
    return True


async def settled(server: FakeRyzeServer, path: Path) -> None:
    """Bounded event-loop turns until the journal opens again and the record stops growing."""
    for _ in range(500):
        if await journal_opens(path):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the journal is still locked after leaving the loop")
    # Whatever was still going to be sent would have been sent in these turns.
    for _ in range(50):
        await asyncio.sleep(0.01)


async def leave_by_break(campaign: Campaign) -> None:
    async for _ in campaign:
        break


async def leave_by_exception(campaign: Campaign) -> None:
    async def consume() -> None:
        async for _ in campaign:
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        await consume()


async def leave_by_dropping_the_iterator(campaign: Campaign) -> None:
    iterator = aiter(campaign)
    await anext(iterator)
    del iterator
    gc.collect()


async def leave_by_cancelling_the_task(campaign: Campaign) -> None:
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in campaign:
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# On the virtual clock: the loop's idle turns below (the chances for anything still going to
# be sent) cost no real time, and the clock moves only when nothing at all is ready to run.
@pytest.mark.parametrize("leave", [leave_by_break, leave_by_exception,
                                   leave_by_dropping_the_iterator, leave_by_cancelling_the_task])
def test_leaving_the_loop_stops_dialing_and_releases_the_journal(
    tmp_path: Path, leave: Callable[[Campaign], Awaitable[None]],
) -> None:
    async def main() -> None:
        journal = tmp_path / "j.db"
        async with FakeRyzeServer(rate_limit=None) as server, \
                RyzeClient(token="test-token", instance="my-instance", base_url=server.url,
                           rate_limit=None) as client:
            campaign = Campaign(client, numbers(500), journal=journal, media=MEDIA,
                                concurrency=CONCURRENCY)
            await leave(campaign)
            at_leave = len(server.requests)
            await settled(server, journal)
            assert len(server.requests) <= at_leave + CONCURRENCY
            assert len(server.requests) < 500
            s = campaign.summary
            assert s is not None
            assert s.pending > 0
            assert s.placed == len(server.placed_calls)

    run_virtual(main(), start=1000.0)


def test_a_consumer_that_stops_pulling_holds_the_dialing(tmp_path: Path) -> None:
    """An iterator kept but not pulled: at most the in-flight calls and a small buffer go out."""
    async def main() -> None:
        async with FakeRyzeServer(rate_limit=None) as server, \
                RyzeClient(token="test-token", instance="my-instance", base_url=server.url,
                           rate_limit=None) as client:
            campaign = Campaign(client, numbers(500), journal=tmp_path / "j.db", media=MEDIA,
                                concurrency=CONCURRENCY)
            iterator = aiter(campaign)
            await anext(iterator)
            for _ in range(100):
                await asyncio.sleep(0.01)
            assert len(server.requests) <= 3 * CONCURRENCY
            async with campaign:
                pass  # leaving the block ends the run
            assert campaign.summary is not None
            assert await journal_opens(tmp_path / "j.db")
            del iterator

    run_virtual(main(), start=1000.0)


async def test_a_failed_run_raises_from_the_loop_once(tmp_path: Path) -> None:
    class Broken:
        async def audio_call(self, number: str, **kwargs: object) -> None:
            raise RuntimeError("boom")

        async def fake_call(self, number: str, **kwargs: object) -> None:
            raise AssertionError("not a fake-call campaign")

    campaign = Campaign(Broken(), numbers(3), journal=tmp_path / "j.db", media=MEDIA)  # type: ignore[arg-type]
    iterator = aiter(campaign)
    with pytest.raises(RuntimeError, match="boom"):
        await anext(iterator)
    with pytest.raises(StopAsyncIteration):
        await anext(iterator)
    assert await journal_opens(tmp_path / "j.db")
