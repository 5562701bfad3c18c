"""#7.1: whatever happens to the CSV between runs, a resume dials only numbers in the file now,
deals with every one of them, and never redials anyone. The fake server's record is the oracle.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ryze_async import (
    Campaign,
    CampaignOutcome,
    CampaignSummary,
    Media,
    RyzeClient,
    normalize_number,
)
from ryze_async._campaign.journal.postgres.store import PgStore
from ryze_async._campaign.journal.sqlite.store import Journal
from ryze_async.testing import FakeRyzeServer, wav_tone

from .conftest import examples

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
MEDIA = Media.from_bytes(wav_tone(0.1))


def fmt(i: int) -> str:
    """A number as a person types it: ``+55 (11) 91111-0001``."""
    return f"+55 (11) 9{1000 + i:04d}-{i:04d}"


ORIGINAL = [fmt(i) for i in range(1, 13)]


def _reformat_and_append(rows: list[str]) -> list[str]:
    # The reproduction: one row tidied (shorter), one number appended.
    return [normalize_number(rows[0]), *rows[1:], "5511987654321"]


EDITS: dict[str, Callable[[list[str]], list[str]]] = {
    "reformat_and_append": _reformat_and_append,
    "insert_at_top": lambda rows: [fmt(900), *rows],
    "reorder": lambda rows: rows[::-1],
    "remove": lambda rows: [r for i, r in enumerate(rows) if i % 3 != 2],
    "append": lambda rows: [*rows, fmt(901), fmt(902)],
    "replace": lambda rows: [fmt(i) for i in range(500, 510)] + rows[:2],
    "truncate": lambda rows: rows[:2],
}


def write_csv(path: Path, rows: list[str]) -> set[str]:
    path.write_text("number,name\n" + "".join(f"{r},Someone\n" for r in rows))
    return {normalize_number(r) for r in rows}


def dialed(server: FakeRyzeServer) -> list[str]:
    return [r.json["number"] for r in server.requests if r.route in ("audio", "fake")]


def check_invariants(s: CampaignSummary) -> None:
    assert s.skipped == s.duplicates + s.invalid + s.removed
    assert s.total == s.placed + s.failed + s.unknown + s.pending + s.in_flight + s.skipped


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(rate_limit=None)


def client_for(server: FakeRyzeServer) -> RyzeClient:
    return RyzeClient("test-token", "my-instance", base_url=server.url, rate_limit=None)


async def run_until(server: FakeRyzeServer, csv_path: Path, journal: Path | str,
                    stop_after: int | None, **kw: Any) -> CampaignSummary:
    async with client_for(server) as client:
        campaign = Campaign(client, csv_path, journal=journal, media=MEDIA, concurrency=1,
                            **kw)
        seen = 0

        async def on_result(_: CampaignOutcome) -> None:
            nonlocal seen
            seen += 1
            if stop_after is not None and seen >= stop_after:
                campaign.stop()

        return await campaign.run(on_result)


@pytest.mark.parametrize("edit", sorted(EDITS))
@pytest.mark.parametrize("ingest_batch", [2, 1000], ids=["batch2", "batch1000"])
async def test_resume_after_editing_the_csv(
    server: FakeRyzeServer, tmp_path: Path, edit: str, ingest_batch: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    csv_path, journal = tmp_path / "numbers.csv", tmp_path / "j.db"
    first_file = write_csv(csv_path, ORIGINAL)
    first = await run_until(server, csv_path, journal, 4, ingest_batch=ingest_batch)
    check_invariants(first)
    run1 = dialed(server)
    assert 4 <= len(run1) < len(ORIGINAL)
    assert set(run1) <= first_file

    edited = EDITS[edit](ORIGINAL)
    second_file = write_csv(csv_path, edited)
    second = await run_until(server, csv_path, journal, None, ingest_batch=ingest_batch)
    check_invariants(second)
    # Only an append keeps the fast path (seek past the unchanged prefix).
    assert ("changed since the last run" in caplog.text) == (edit != "append")
    run2 = dialed(server)[len(run1):]
    assert set(run2) <= second_file, f"called numbers not in the file: {set(run2) - second_file}"
    assert all(n == 1 for n in Counter(run1 + run2).values()), "someone was called twice"
    assert second_file <= set(run1) | set(run2), "a number of the file was never dealt with"
    assert second.pending == 0
    # Run 1 may have stopped before reading the whole file (small batches): only the rows it
    # read were in the journal to be removed.
    read = {normalize_number(r) for r in ORIGINAL[:first.total]}
    assert second.removed == len(read - second_file - set(run1))
    # A third run over the same file changes nothing and calls nobody.
    third = await run_until(server, csv_path, journal, None, ingest_batch=ingest_batch)
    check_invariants(third)
    assert len(dialed(server)) == len(run1) + len(run2)
    assert (third.placed, third.removed, third.pending) == (
        second.placed, second.removed, second.pending)


async def test_a_removed_number_put_back_is_called(
    server: FakeRyzeServer, tmp_path: Path
) -> None:
    csv_path, journal = tmp_path / "numbers.csv", tmp_path / "j.db"
    write_csv(csv_path, ORIGINAL)
    await run_until(server, csv_path, journal, 2)
    write_csv(csv_path, ORIGINAL[:3])
    s = await run_until(server, csv_path, journal, None)
    assert s.removed == len(ORIGINAL) - 3
    write_csv(csv_path, ORIGINAL)
    s = await run_until(server, csv_path, journal, None)
    check_invariants(s)
    assert (s.removed, s.pending, s.placed) == (0, 0, len(ORIGINAL))
    assert sorted(dialed(server)) == sorted(normalize_number(r) for r in ORIGINAL)


async def test_an_iterable_resumed_with_other_items(
    server: FakeRyzeServer, tmp_path: Path
) -> None:
    journal = tmp_path / "j.db"
    first = [normalize_number(r) for r in ORIGINAL]
    async with client_for(server) as client:
        campaign = Campaign(client, first, journal=journal, media=MEDIA, concurrency=1)
        count = 0

        async def on_result(_: CampaignOutcome) -> None:
            nonlocal count
            count += 1
            if count == 3:
                campaign.stop()

        await campaign.run(on_result)
        run1 = dialed(server)
        second = [normalize_number(fmt(777)), *first[5:]]
        s = await Campaign(client, iter(second), journal=journal, media=MEDIA).run()
    check_invariants(s)
    run2 = dialed(server)[len(run1):]
    assert set(run2) <= set(second)
    assert set(second) <= set(run1) | set(run2)
    assert all(n == 1 for n in Counter(run1 + run2).values())


# -- random edit sequences ---------------------------------------------------------------------

UNIVERSE = [fmt(i) for i in range(200, 230)]
_written = st.sampled_from(UNIVERSE).flatmap(
    lambda r: st.sampled_from([r, normalize_number(r), f" {r} "]))
_files = st.lists(st.one_of(_written, st.just("not-a-number")), min_size=1, max_size=14)


async def _scenario(files: list[list[str]], stops: list[int | None], batch: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        csv_path, journal = Path(tmp) / "n.csv", Path(tmp) / "j.db"
        async with FakeRyzeServer(rate_limit=None) as server:
            done = 0
            for rows, stop in zip(files, stops, strict=True):
                now = {normalize_number(r) for r in rows if r != "not-a-number"}
                csv_path.write_text("phone\n" + "".join(f"{r}\n" for r in rows))
                s = await run_until(server, csv_path, journal, stop, ingest_batch=batch,
                                    synchronous="normal")
                check_invariants(s)
                calls = dialed(server)
                assert set(calls[done:]) <= now, "called a number that is not in the file"
                assert len(calls) == len(set(calls)), "someone was called twice"
                done = len(calls)
                if stop is None:
                    assert now <= set(calls), "a number of the file was never dealt with"
                    assert s.pending == 0


@settings(max_examples=examples(25), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(_files, min_size=2, max_size=4), data=st.data(),
       batch=st.sampled_from([1, 3, 1000]))
def test_random_edit_sequences(files: list[list[str]], data: st.DataObject, batch: int) -> None:
    stops: list[int | None] = [data.draw(st.one_of(st.none(), st.integers(1, 4)))
                               for _ in files[:-1]]
    asyncio.run(_scenario(files, [*stops, None], batch))


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.infra)]
)
async def test_a_removed_number_appended_back_is_called_after_the_feeder_passed_it(
    server: FakeRyzeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest, store: str,
) -> None:
    """The replay of a hypothesis find: a number removed from the file (swept ``skipped``) comes
    back in rows appended to the file. The resume takes the fast path (no pass, dispatching at
    once), and the number comes back to pending only after the feeder already read past its
    (old, low) row id. It must still be called in this run."""
    a, b, c = fmt(1), fmt(2), fmt(3)
    csv_path = tmp_path / "numbers.csv"
    journal: Path | str = tmp_path / "j.db"
    where: dict[str, Any] = {}
    store_class: type[Any] = Journal
    if store == "postgresql":
        journal = request.getfixturevalue("pg_dsn")
        where = {"campaign": f"edits-{uuid.uuid4().hex[:12]}"}
        store_class = PgStore
    write_csv(csv_path, [a, b])
    await run_until(server, csv_path, journal, 1, **where)  # a placed; b pending (one batch)
    write_csv(csv_path, [a])
    s = await run_until(server, csv_path, journal, None, **where)  # a new pass: b removed
    assert (s.removed, dialed(server)) == (1, [normalize_number(a)])

    # Hold the batch holding b until c (appended before it) was fed and called.
    c_called = asyncio.Event()
    real_ingest = store_class.ingest

    async def ingest(self: Any, entries: list[tuple[int, str]], **kw: Any) -> Any:
        if any(raw.startswith(b) for _, raw in entries):
            await c_called.wait()
        return await real_ingest(self, entries, **kw)

    monkeypatch.setattr(store_class, "ingest", ingest)
    write_csv(csv_path, [a, c, b])  # only appended to: the fast path
    async with client_for(server) as client:
        campaign = Campaign(client, csv_path, journal=journal, media=MEDIA, concurrency=1,
                            ingest_batch=1, **where)

        async def on_result(o: CampaignOutcome) -> None:
            if o.number == normalize_number(c):
                c_called.set()

        s = await campaign.run(on_result)
    check_invariants(s)
    assert dialed(server) == [normalize_number(n) for n in (a, c, b)]
    assert (s.pending, s.removed, s.placed) == (0, 0, 3)
