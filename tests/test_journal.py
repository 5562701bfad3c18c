"""The campaign journal and the streamed number source, without any server."""

from __future__ import annotations

import asyncio
import csv
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ryze_async import JournalError, JournalLockedError, JournalMismatchError, normalize_number
from ryze_async._campaign.inputs import Position
from ryze_async._campaign.inputs.source import NumberSource
from ryze_async._campaign.journal import CampaignIdentity, Journal

AUDIO = CampaignIdentity("audio", "f" * 64, "my-instance")


def _rows(path: Path) -> dict[str, tuple[str, str | None]]:
    """number -> (state, error), read through an independent connection."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {n: (s, e) for n, s, e in conn.execute("SELECT number, state, error FROM numbers")}
    finally:
        conn.close()


async def _ingest(journal: Journal, raws: list[str], start: int = 0) -> None:
    entries = [(start + i + 1, raw) for i, raw in enumerate(raws)]
    await journal.ingest(entries, position=(start + len(raws), start + len(raws), ""),
                         normalize=normalize_number)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """A typical permissive umask, so owner-only permissions must come from the journal."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# -- journal ----------------------------------------------------------------------------------


async def test_transitions_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with await Journal.open(path, identity=AUDIO) as journal:
        await _ingest(journal, ["5511900000001", "+55 11 90000-0002", "5511900000001",
                                "5511900000003@s.whatsapp.net", "5511900000003", "nope"])
        rows = await journal.pending_after(0, 10)
        assert [r[1] for r in rows] == ["5511900000001", "5511900000002",
                                        "5511900000003@s.whatsapp.net"]
        first, second, third = (r[0] for r in rows)
        await journal.mark_sending(first)
        assert _rows(path)["5511900000001"][0] == "sending"  # committed, seen from outside
        journal.record(first, "placed", call_id="C1", status=200)
        await journal.mark_sending(second)
        journal.record(second, "failed", status=400, error="HTTP 400: bad")
        await journal.flush()
        assert await journal.pending_after(0, 10) == rows[2:]
        counts = await journal.counts()
    assert (counts.total, counts.placed, counts.failed, counts.pending) == (6, 1, 1, 1)
    assert (counts.duplicates, counts.invalid, counts.sending, counts.unknown) == (2, 1, 0, 0)
    states = _rows(path)
    assert states["5511900000001"] == ("placed", None)
    assert states["5511900000002"] == ("failed", "HTTP 400: bad")
    assert states["nope"][0] == "failed"
    assert "not a phone number" in (states["nope"][1] or "")
    assert third


async def test_mark_sending_refuses_a_row_that_is_not_pending(tmp_path: Path) -> None:
    async with await Journal.open(tmp_path / "j.db") as journal:
        await _ingest(journal, ["5511900000001"])
        (row_id, _, _), = await journal.pending_after(0, 1)
        await journal.mark_sending(row_id)
        with pytest.raises(JournalError, match="not pending"):
            await journal.mark_sending(row_id)


async def test_sending_becomes_unknown_on_open_and_is_not_pending(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with await Journal.open(path) as journal:
        await _ingest(journal, ["5511900000001", "5511900000002"])
        (row_id, _, _), _second = await journal.pending_after(0, 5)
        await journal.mark_sending(row_id)
    async with await Journal.open(path) as journal:
        assert journal.recovered == 1
        assert [r[1] for r in await journal.pending_after(0, 5)] == ["5511900000002"]
        counts = await journal.counts()
    assert (counts.unknown, counts.sending, counts.pending) == (1, 0, 1)
    state, error = _rows(path)["5511900000001"]
    assert state == "unknown"
    assert "may have been placed" in (error or "")


async def test_retry_moves_failed_and_unknown_back_but_never_invalid(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with await Journal.open(path) as journal:
        await _ingest(journal, ["5511900000001", "5511900000002", "bad"])
        (a, _, _), (b, _, _) = await journal.pending_after(0, 5)
        await journal.mark_sending(a)
        journal.record(a, "failed", status=400, error="x")
        await journal.mark_sending(b)
        journal.record(b, "unknown", error="y")
        await journal.flush()
        assert await journal.retry(["unknown"]) == 1
        assert [r[0] for r in await journal.pending_after(0, 5)] == [b]
        assert await journal.retry(["failed"]) == 1
        assert [r[0] for r in await journal.pending_after(0, 5)] == [a, b]
    assert _rows(path)["bad"][0] == "failed"


async def test_concurrent_marks_share_one_commit(tmp_path: Path) -> None:
    async with await Journal.open(tmp_path / "j.db") as journal:
        await _ingest(journal, [f"55119{i:08d}" for i in range(50)])
        ids = [r[0] for r in await journal.pending_after(0, 100)]
        before = journal.commits
        await asyncio.gather(*(journal.mark_sending(i) for i in ids))
        assert journal.commits - before == 1
        assert (await journal.counts()).sending == 50


async def test_a_failed_commit_refuses_every_later_mark() -> None:
    from ryze_async._campaign.journal import MarkSending, Op
    from ryze_async._campaign.journal.events import GroupCommit

    attempts: list[list[Op]] = []

    async def failing(ops: list[Op]) -> set[int]:
        attempts.append(ops)
        raise sqlite3.OperationalError("disk I/O error")

    group: GroupCommit[Op] = GroupCommit(failing, lambda row: JournalError(f"row {row}"))
    with pytest.raises(JournalError, match="disk I/O error"):
        await group.mark(1, MarkSending(1, 0.0, None))
    with pytest.raises(JournalError, match="cannot be written"):
        await group.mark(2, MarkSending(2, 0.0, None))
    assert len(attempts) == 1  # the second mark never reached the database, nor the network


async def test_files_are_owner_only(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "j.db"
    async with await Journal.open(path) as journal:
        await _ingest(journal, ["5511900000001"])
        for suffix in ("", "-wal", "-shm"):
            mode = stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode)
            assert mode == 0o600, (suffix, oct(mode))
        out = tmp_path / "export.csv"
        await journal.export_csv(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


async def test_existing_journal_with_loose_permissions_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with await Journal.open(path):
        pass
    path.chmod(0o644)
    async with await Journal.open(path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_identity_mismatch_is_refused_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with await Journal.open(path, identity=AUDIO) as journal:
        await _ingest(journal, ["5511900000001"])
        (row_id, _, _), = await journal.pending_after(0, 1)
        await journal.mark_sending(row_id)
        journal.record(row_id, "placed", call_id="C", status=200)
    other_media = CampaignIdentity("audio", "0" * 64, "my-instance")
    with pytest.raises(JournalMismatchError, match="media") as info:
        await Journal.open(path, identity=other_media)
    assert "--force" in str(info.value)
    with pytest.raises(JournalMismatchError, match="instance"):
        await Journal.open(path, identity=CampaignIdentity("audio", "f" * 64, "other"))
    with pytest.raises(JournalMismatchError, match="call kind"):
        await Journal.open(path, identity=CampaignIdentity("fake", None, "my-instance"))
    # The refused opens released the lock: a forced open works and stores the new identity.
    async with await Journal.open(path, identity=other_media, force=True) as journal:
        assert (await journal.meta())["media"] == "0" * 64
    async with await Journal.open(path, identity=other_media):
        pass


async def test_identity_can_change_until_a_call_may_have_been_placed(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with await Journal.open(path, identity=AUDIO) as journal:
        await _ingest(journal, ["5511900000001", "bad"])
    typo_fixed = CampaignIdentity("audio", "f" * 64, "fixed-instance")
    async with await Journal.open(path, identity=typo_fixed) as journal:
        assert (await journal.meta())["instance"] == "fixed-instance"


async def test_a_second_campaign_on_the_same_journal_is_locked_out(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with await Journal.open(path) as journal:
        await _ingest(journal, ["5511900000001"])
        with pytest.raises(JournalLockedError):
            await Journal.open(path)
        async with await Journal.open(path, read_only=True, create=False) as reader:
            assert (await reader.counts()).pending == 1
    async with await Journal.open(path):
        pass


async def test_missing_journal_is_not_created_when_create_is_false(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal"):
        await Journal.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


async def test_export_csv_has_one_row_per_stored_number(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    async with await Journal.open(tmp_path / "j.db") as journal:
        await _ingest(journal, ["5511900000001", "5511900000002", "5511900000001", "x"])
        (a, _, _), _ = await journal.pending_after(0, 5)
        await journal.mark_sending(a)
        journal.record(a, "placed", call_id="CALL-1", status=200)
        assert await journal.export_csv(out) == 3
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["number"] for r in rows] == ["5511900000001", "5511900000002", "x"]
    assert [r["state"] for r in rows] == ["placed", "pending", "invalid"]
    assert rows[0]["call_id"] == "CALL-1"
    assert rows[0]["http_status"] == "200"
    assert rows[0]["attempts"] == "1"
    assert rows[0]["last_attempt_utc"].endswith("+00:00")
    assert rows[2]["line"] == "4"
    assert rows[2]["attempts"] == "0"
    assert "not a phone number" in rows[2]["error"]


async def test_ingest_position_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with await Journal.open(path) as journal:
        await _ingest(journal, ["5511900000001", "5511900000001"])
        assert await journal.ingest_position() == (2, 2, "")
    async with await Journal.open(path) as journal:
        assert await journal.ingest_position() == (2, 2, "")
        await _ingest(journal, ["5511900000001", "5511900000009"], start=2)
        counts = await journal.counts()
    assert (counts.total, counts.duplicates, counts.pending) == (4, 2, 2)


# -- number source ----------------------------------------------------------------------------


async def _read(source: NumberSource, offset: int = 0, line: int = 0, size: int = 2,
                digest: str = "") -> tuple[
    list[tuple[int, str]], int, int
]:
    entries: list[tuple[int, str]] = []
    start = Position(offset, line, digest)
    async for batch in await source.open(start, size):
        entries += batch.entries
        start = batch.position
    return entries, start.offset, start.line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5511900000001\n5511900000002\n", [(1, "5511900000001"), (2, "5511900000002")]),
        ("phone,name\n5511900000001,Ana\n", [(2, "5511900000001")]),
        ("name,Number\nAna,5511900000001\nBia,\n", [(2, "5511900000001"), (3, "")]),
        ("\ufeff# list\n\n  \nnumber\n5511900000001\n# c\n\n5511900000002",
         [(5, "5511900000001"), (8, "5511900000002")]),
        ("nome;telefone\r\n\"Ana\";5511900000001\r\n", [(2, "5511900000001")]),
        ("telefone;nome\r\n5511900000001;Ana\r\n", [(2, "5511900000001")]),
        ("5511900000001,\"a\nmulti-line note\"\n5511900000002\n",
         [(1, "5511900000001"), (3, "5511900000002")]),
    ],
    ids=["no-header", "header", "number-column", "comments-bom", "semicolon-second-col",
         "semicolon", "multiline"],
)
async def test_csv_layouts(tmp_path: Path, text: str, expected: list[tuple[int, str]]) -> None:
    path = tmp_path / "n.csv"
    path.write_bytes(text.encode())
    entries, offset, _ = await _read(NumberSource(path))
    assert entries == expected
    assert offset == path.stat().st_size


async def test_csv_resumes_at_the_stored_offset_and_sees_appended_lines(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    path.write_text("number\n5511900000001\n5511900000002\n5511900000003\n")
    source = NumberSource(str(path))
    first = []
    async for batch in await source.open(Position(), 2):
        first.append(batch)
        break
    assert first[0].entries == [(2, "5511900000001"), (3, "5511900000002")]
    at = first[0].position
    rest, _, _ = await _read(source, at.offset, at.line, digest=at.digest)
    assert rest == [(4, "5511900000003")]
    assert not source.restarted
    with path.open("a") as f:
        f.write("5511900000004\n")
    # The digest is the consumed prefix's: any position read so far still resumes by seeking.
    assert (await _read(source, at.offset, at.line, digest=at.digest))[0] == [
        (4, "5511900000003"), (5, "5511900000004")]
    assert not source.restarted


@pytest.mark.parametrize("change", ["shorter", "edited", "no-digest", "no-final-newline"])
async def test_csv_changed_under_the_stored_position_is_read_from_the_start(
    tmp_path: Path, change: str
) -> None:
    path = tmp_path / "n.csv"
    path.write_text("5511900000001\n5511900000002" + ("" if change == "no-final-newline"
                                                      else "\n"))
    source = NumberSource(path)
    entries: list[tuple[int, str]] = []
    async for batch in await source.open(Position(), 10):
        entries, at = batch.entries, batch.position
    assert len(entries) == 2
    digest = "" if change == "no-digest" else at.digest
    if change == "shorter":
        path.write_text("5511900000001\n")
    elif change == "edited":
        path.write_text("5511900000009\n5511900000002\n")
    elif change == "no-final-newline":
        with path.open("a") as f:
            f.write("3\n5511900000004\n")
    entries, offset, _ = await _read(source, at.offset, at.line, digest=digest)
    assert source.restarted
    assert entries[0][0] == 1
    assert offset == path.stat().st_size


async def test_iterables_sync_and_async_skip_blanks_comments_and_resume() -> None:
    items = ["5511900000001", " ", "# note", 5511900000002, "5511900000003"]
    entries, offset, _ = await _read(NumberSource(items))  # type: ignore[arg-type]
    assert entries == [(1, "5511900000001"), (4, "5511900000002"), (5, "5511900000003")]
    assert offset == 5

    async def agen() -> AsyncIterator[str]:
        for item in ["5511900000001", "", "5511900000002"]:
            yield item

    # An iterable cannot seek nor be trusted to repeat itself: it is always read again.
    again = NumberSource(agen())
    assert (await _read(again, offset=1))[0] == [(1, "5511900000001"), (3, "5511900000002")]
    assert again.restarted
    with pytest.raises(TypeError, match="must be str"):
        await _read(NumberSource([b"5511900000001"]))  # type: ignore[list-item]


async def test_a_schema_1_journal_is_migrated_with_its_states(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE numbers (
            id INTEGER PRIMARY KEY, number TEXT NOT NULL, key TEXT, valid INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending','sending','placed','failed','unknown')),
            line INTEGER, call_id TEXT, http_status INTEGER, error TEXT, attempt_at REAL,
            attempts INTEGER NOT NULL DEFAULT 0);
        CREATE UNIQUE INDEX numbers_key ON numbers(key);
        CREATE INDEX numbers_pending ON numbers(id) WHERE state = 'pending';
        INSERT INTO meta VALUES ('schema', '1'), ('ingest_offset', '42'), ('ingest_line', '3'),
            ('ingest_total', '4'), ('ingest_duplicates', '1');
        INSERT INTO numbers(number, key, valid, state, line) VALUES
            ('5511900000001', '5511900000001', 1, 'placed', 1),
            ('5511900000002', '5511900000002', 1, 'sending', 2),
            ('5511900000003', '5511900000003', 1, 'pending', 3);
    """)
    conn.close()
    async with await Journal.open(path) as journal:
        assert journal.recovered == 1
        # No digest was stored: the source cannot trust the offset and reads the file again.
        assert await journal.ingest_position() == (42, 3, "")
        counts = await journal.counts()
        assert (counts.total, counts.placed, counts.unknown, counts.pending) == (4, 1, 1, 1)
        await journal.begin_pass()
        await _ingest(journal, ["5511900000002", "5511900000004"])
        assert await journal.finish_pass() == 1  # ...03 is no longer in the input
        counts = await journal.counts()
    assert (counts.pending, counts.removed, counts.unknown, counts.placed) == (1, 1, 1, 1)
    assert (counts.total, counts.duplicates) == (4, 0)
