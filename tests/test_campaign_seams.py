"""The campaign's seams (#8): live counts are a fold over the journal store's own events, the
connection-failure run is reset by anything else, and the summary picks its message by the stop
reason. Each test here kills a mutation that survived the rest of the suite.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ryze_async import (
    AuthenticationError,
    CallResult,
    Campaign,
    ConnectionFailedError,
    InvalidRequestError,
    Media,
    normalize_number,
)
from ryze_async._campaign.journal import Journal, JournalCounts
from ryze_async._campaign.outcomes import LiveCounts
from ryze_async.testing import wav_tone

MEDIA = Media.from_bytes(wav_tone(0.1))
Hook = Callable[[], Awaitable[None]]
NUMBERS = [f"55119111100{i:02d}" for i in range(12)]


def _plain(counts: JournalCounts) -> JournalCounts:
    return JournalCounts(counts.total, counts.pending, counts.sending, counts.placed,
                         counts.failed, counts.unknown, counts.invalid, counts.duplicates, 0.0,
                         counts.removed)


async def test_live_counts_follow_every_transition_the_store_commits(tmp_path: Path) -> None:
    """Every transition, folded from the store's events, matches the store's own count."""
    live = LiveCounts()
    async with await Journal.open(tmp_path / "j.db") as journal:
        await journal.watch(live.apply)

        async def check() -> None:
            await journal.flush()
            folded = live.counts()  # read before counts(): that call rebases the fold
            assert folded == _plain(await journal.counts())

        await journal.ingest([(i, n) for i, n in enumerate([*NUMBERS, NUMBERS[0], "x"], 1)],
                             position=(14, 14, ""), normalize=normalize_number)
        await check()
        rows = [r[0] for r in await journal.pending_after(0, 100)]
        for row in rows[:6]:
            await journal.mark_sending(row)
        await check()  # pending -> sending
        for row, state in zip(rows[:5], ("placed", "failed", "unknown", "pending", "placed"),
                              strict=True):
            journal.record(row, state)  # type: ignore[arg-type]
        await check()  # sending -> each outcome, and back to pending
        journal.record(rows[6], "failed", error="refused before sending")
        await check()  # pending -> failed, never sent
        await journal.mark_sending(rows[3])
        await check()
        assert live.counts().sending == 2
        assert live.done_this_run == 5


class Scripted:
    """Answers call ``i`` (in call order) with ``script(i)``: an exception, or placed."""

    def __init__(self, script: Callable[[int], Exception | None], campaign: list[Campaign]):
        self.script = script
        self.calls = 0
        self.campaign = campaign
        self.in_flight_seen: list[int] = []

    async def audio_call(self, number: str, *, media: Media, instance: str | None,
                         before_send: Hook, on_not_sent: Hook | None = None) -> CallResult:
        index = self.calls
        self.calls += 1
        failure = self.script(index)
        if isinstance(failure, ConnectionFailedError | InvalidRequestError):
            raise failure  # refused before a byte: not marked
        await before_send()
        self.in_flight_seen.append(self.campaign[0].snapshot().in_flight)
        if failure is not None:
            raise failure
        return CallResult(success=True, callId=f"C-{index}", number=number)

    async def fake_call(self, number: str, **kwargs: Any) -> CallResult:
        raise AssertionError("not a fake-call campaign")


async def _run(tmp_path: Path, script: Callable[[int], Exception | None], **options: Any) -> (
    tuple[Campaign, Scripted]
):
    holder: list[Campaign] = []
    client = Scripted(script, holder)
    campaign = Campaign(client, NUMBERS, journal=tmp_path / "j.db", media=MEDIA,
                        concurrency=1, **options)
    holder.append(campaign)
    await campaign.run()
    return campaign, client


async def test_live_counts_during_a_run_count_the_call_in_flight(tmp_path: Path) -> None:
    campaign, client = await _run(tmp_path, lambda i: None)
    assert client.in_flight_seen == [1] * len(NUMBERS)
    assert campaign.summary is not None
    assert campaign.summary.placed == len(NUMBERS)
    assert campaign.live.done_this_run == len(NUMBERS)


def _conn_failure() -> ConnectionFailedError:
    return ConnectionFailedError("connection refused")


async def test_a_placed_call_ends_a_run_of_connection_failures(tmp_path: Path) -> None:
    # Two connection failures, one placed call, over and over: never 3 failures in a row.
    campaign, _ = await _run(tmp_path, lambda i: None if i % 3 == 2 else _conn_failure(),
                             max_connection_failures=3, max_requeues=50)
    assert campaign.summary is not None
    assert campaign.summary.stop_reason == "completed", campaign.summary.message
    assert campaign.summary.placed == len(NUMBERS)


async def test_another_failure_ends_a_run_of_connection_failures(tmp_path: Path) -> None:
    # Two connection failures, one number refused by validation: never 3 in a row.
    def script(i: int) -> Exception | None:
        return InvalidRequestError("not a number") if i % 3 == 2 else _conn_failure()

    campaign, _ = await _run(tmp_path, script, max_connection_failures=3, max_requeues=50)
    assert campaign.summary is not None
    assert campaign.summary.stop_reason == "completed", campaign.summary.message
    assert campaign.summary.failed == len(NUMBERS)


async def test_connection_failures_in_a_row_trip_the_breaker(tmp_path: Path) -> None:
    campaign, client = await _run(tmp_path, lambda i: _conn_failure(),
                                  max_connection_failures=3, max_requeues=50)
    assert campaign.summary is not None
    assert campaign.summary.stop_reason == "circuit_breaker"
    assert client.calls == 3


async def test_the_breakers_summary_message_is_its_own(tmp_path: Path) -> None:
    """The breaker's message already says what is pending and how to resume: not repeated."""
    campaign, _ = await _run(
        tmp_path, lambda i: None if i < 2 else AuthenticationError("bad token", status=401))
    summary = campaign.summary
    assert summary is not None
    assert summary.stop_reason == "circuit_breaker"
    assert summary.pending == len(NUMBERS) - 2
    assert summary.message.startswith("stopped by the circuit breaker: AuthenticationError")
    assert summary.message == campaign.snapshot().message
    assert "numbers left pending: run the same command" not in summary.message
