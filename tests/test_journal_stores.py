"""The journal-store Protocol's behaviours, run against every store: SQLite (a file) and
PostgreSQL (a throw-away cluster, ``pg_cluster.py``; skipped where there is none).

Each store is opened through ``open_journal`` from its ``journal`` target, as a campaign does.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from ryze_async import JournalError, JournalMismatchError
from ryze_async._campaign.journal import CampaignIdentity, JournalStore, open_journal
from ryze_async._campaign.outcomes import LiveCounts

IDENTITY = CampaignIdentity("fake", None, "inst")
Opener = Callable[..., Awaitable[JournalStore]]


def same(raw: str) -> str:
    """A normalizer: digits with a plus; anything without 8 digits is refused."""
    digits = "".join(c for c in raw if c.isdigit())
    if len(digits) < 8:
        raise ValueError("too short")
    return f"+{digits}"


def pos(line: int) -> tuple[int, int, str]:
    return line * 10, line, f"d{line}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.infra)])
async def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Open (again) the one journal of this test: a file, or a campaign in PostgreSQL."""
    if request.param == "sqlite":
        target, campaign = str(tmp_path / "journal.db"), None
    else:
        target = request.getfixturevalue("pg_dsn")
        campaign = f"s-{uuid.uuid4().hex[:12]}"
    opened: list[JournalStore] = []

    async def opener(**kw: object) -> JournalStore:
        kw.setdefault("identity", IDENTITY)
        journal = await open_journal(target, campaign=campaign, **kw)  # type: ignore[arg-type]
        opened.append(journal)
        return journal

    yield opener
    for journal in opened:
        await journal.close()


@pytest.fixture
async def store(reopen: Opener) -> JournalStore:
    return await reopen()


async def add(store: JournalStore, *raws: str, start: int = 1) -> None:
    entries = list(enumerate(raws, start))
    await store.ingest(entries, position=pos(start + len(raws) - 1), normalize=same)


async def test_ingest_dedupes_and_refuses_bad_numbers(store: JournalStore) -> None:
    result = await store.ingest([(1, "+49 301234567"), (2, "49301234567"), (3, "123"),
                                 (4, "+4930 7654321")], position=pos(4), normalize=same)
    assert (result.added, result.duplicates) == (2, 1)
    assert [(line, raw) for line, raw, _ in result.invalid] == [(3, "123")]
    counts = await store.counts()
    assert (counts.total, counts.pending, counts.invalid, counts.duplicates) == (4, 2, 1, 1)
    assert await store.ingest_position() == pos(4)
    # The same batch again (a resumed or second reader): each number is still there once.
    await store.ingest([(1, "+49 301234567")], position=pos(4), normalize=same)
    assert (await store.counts()).pending == 2


async def test_claim_sending_outcome(store: JournalStore) -> None:
    await add(store, "+4930111111", "+4930222222", "+4930333333")
    rows = await store.pending_after(0, 10)
    assert [(number, line) for _, number, line in rows] == [
        ("+4930111111", 1), ("+4930222222", 2), ("+4930333333", 3)]
    (a, _, _), (b, _, _), (c, _, _) = rows
    await store.mark_sending(a)
    with pytest.raises(JournalError):
        await store.mark_sending(a)  # not pending any more: never sent twice
    await store.mark_sending(b)
    store.record(a, "placed", call_id="call-1", status=200)
    store.record(b, "failed", status=400, error="refused")
    await store.flush()
    counts = await store.counts()
    assert (counts.placed, counts.failed, counts.sending, counts.pending) == (1, 1, 0, 1)
    assert await store.held_elsewhere() == 0
    # SQLite offers the pending row again; a shared store's page was a claim: it is held.
    assert [r[0] for r in await store.pending_after(0, 10)] == ([] if store.shared else [c])


async def test_not_sent_goes_back_to_pending(store: JournalStore) -> None:
    await add(store, "+4930111111")
    [(row, _, _)] = await store.pending_after(0, 10)
    await store.mark_sending(row)
    store.record(row, "pending", status=429, error="rate limited")
    await store.flush()
    assert (await store.counts()).pending == 1
    await store.mark_sending(row)  # pending again: it may be claimed again
    store.record(row, "placed", call_id="c", status=200)
    await store.flush()
    assert (await store.counts()).placed == 1


async def test_rows_left_sending_become_unknown_and_are_not_offered(
    store: JournalStore, reopen: Opener
) -> None:
    await add(store, "+4930111111", "+4930222222")
    rows = await store.pending_after(0, 10)
    await store.mark_sending(rows[0][0])
    await store.close()  # the run ends with a call in flight (no outcome recorded)
    again = await reopen()
    counts = await again.counts()
    assert (counts.unknown, counts.sending, counts.pending) == (1, 0, 1)
    assert [r[1] for r in await again.pending_after(0, 10)] == ["+4930222222"]


async def test_retry_puts_failed_and_unknown_back(store: JournalStore) -> None:
    await add(store, "+4930111111", "+4930222222", "+4930333333")
    rows = await store.pending_after(0, 10)
    for (row, _, _), state in zip(rows, ("failed", "unknown", "placed"), strict=True):
        await store.mark_sending(row)
        store.record(row, state)  # type: ignore[arg-type]
    await store.flush()
    assert await store.retry(["unknown"]) == 1
    counts = await store.counts()
    assert (counts.pending, counts.failed, counts.placed) == (1, 1, 1)
    with pytest.raises(ValueError, match="retry"):
        await store.retry(["placed"])  # type: ignore[list-item]


async def test_changed_input_skips_removed_numbers(store: JournalStore) -> None:
    await add(store, "+4930111111", "+4930222222")
    started = await store.begin_pass(expected=pos(2))
    assert started
    assert await store.sweep_due()
    if store.shared:  # nothing is claimed while a pass is open (the feeder waits anyway)
        assert await store.pending_after(0, 10) == []
    await add(store, "+4930111111")
    assert await store.finish_pass() == 1
    assert not await store.sweep_due()
    counts = await store.counts()
    assert (counts.pending, counts.removed) == (1, 1)


async def test_a_removed_number_appended_back_is_offered_past_the_cursor(
    store: JournalStore,
) -> None:
    """The feeder reads ``pending_after(cursor)``: a removed number appended back (the resume's
    fast path, no pass holding dispatch) must come after rows it already offered."""
    await add(store, "+4930111111", "+4930222222")
    await store.begin_pass(expected=pos(2))
    await add(store, "+4930111111")
    assert await store.finish_pass() == 1  # +4930222222 removed
    await add(store, "+4930333333", start=2)  # appended: offered, the feeder's cursor moves on
    rows = await store.pending_after(0, 10)
    assert [r[1] for r in rows] == ["+4930111111", "+4930333333"]
    cursor = rows[-1][0]
    result = await store.ingest([(3, "+4930222222")], position=pos(3), normalize=same)
    assert result.restored == 1
    assert [r[1] for r in await store.pending_after(cursor, 10)] == ["+4930222222"]
    assert (await store.counts()).removed == 0


async def test_live_counts_fold_matches_the_store(store: JournalStore) -> None:
    live = LiveCounts()
    await store.watch(live.apply)
    await add(store, "+4930111111", "+4930222222", "+4930333333", "12")
    rows = await store.pending_after(0, 10)
    await store.mark_sending(rows[0][0])
    store.record(rows[0][0], "placed", call_id="c", status=200)
    await store.mark_sending(rows[1][0])
    await store.flush()
    folded = live.counts()
    counts = await store.counts()
    for field in ("total", "pending", "sending", "placed", "invalid"):
        assert getattr(folded, field) == getattr(counts, field), field


async def test_export_csv_has_every_row(store: JournalStore) -> None:
    await add(store, "+4930111111", "+4930222222", "12")
    [(row, _, _), _] = await store.pending_after(0, 10)
    await store.mark_sending(row)
    store.record(row, "placed", call_id="call-9", status=200)
    out = io.StringIO()
    assert await store.export_csv(out) == 3
    rows = {r["number"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    assert rows["+4930111111"]["state"] == "placed"
    assert rows["+4930111111"]["call_id"] == "call-9"
    assert rows["+4930222222"]["state"] in ("pending", "claimed")
    assert rows["12"]["state"] == "invalid"  # stored failed, never a call (#15)


async def test_identity_of_another_campaign_is_refused(store: JournalStore,
                                                      reopen: Opener) -> None:
    await add(store, "+4930111111")
    [(row, _, _)] = await store.pending_after(0, 10)
    await store.mark_sending(row)
    store.record(row, "placed", call_id="c", status=200)
    await store.close()
    with pytest.raises(JournalMismatchError):
        await reopen(identity=CampaignIdentity("fake", None, "other-instance"))
    assert (await reopen(identity=CampaignIdentity("fake", None, "other"), force=True)
            ).recovered == 0


async def test_a_held_row_waits_in_the_journal_until_its_time(reopen: Opener) -> None:
    """(#10) ``hold``: pending, skipped by ``pending_after``, offered by ``due`` once its time
    has come (a shared store: claimed then; its claim was given back by the hold), kept
    across a reopen, and forgotten when the rules that computed it change."""
    store = await reopen()
    await store.hold_rules("rules-1")
    await add(store, "+4930111111", "+4930222222", "+4930333333")
    [(a, _, _), (b, _, _), (c, _, _)] = await store.pending_after(0, 10)
    store.hold(a, 2000.0)
    store.hold(b, 1000.0)
    store.hold(c, float("inf"))  # no window ever opens for it
    await store.flush()
    assert await store.held_elsewhere() == 0  # nobody's claim any more
    assert (await store.counts()).pending == 3
    assert await store.pending_after(0, 10) == []
    assert await store.next_due() == 1000.0
    assert await store.held_counts(500.0) == (2, 1)
    assert await store.due(999.0, (float("-inf"), 0), 10) == []
    await store.close()

    store = await reopen()
    assert await store.hold_rules("rules-1") == 0  # the same rules: the holds stand
    assert await store.pending_after(0, 10) == []
    due = await store.due(1500.0, (float("-inf"), 0), 10)
    assert [(r[0], r[1], r[3]) for r in due] == [(b, "+4930222222", 1000.0)]
    after = (due[0][3], due[0][0])
    assert await store.next_due(after) == 2000.0
    assert [r[0] for r in await store.due(2000.0, after, 10)] == [a]
    await store.mark_sending(a)
    store.record(a, "placed", call_id="call-1", status=200)
    await store.flush()
    assert await store.due(3000.0, (float("-inf"), 0), 10) == ([] if store.shared else [
        (b, "+4930222222", 2, 1000.0)])  # SQLite reads, a shared store claimed
    # Other rules: every hold is forgotten, and the rows are read (and judged) again.
    assert await store.hold_rules("rules-2") == (1 if store.shared else 2)
    assert [r[0] for r in await store.pending_after(0, 10)] == ([c] if store.shared else [b, c])
