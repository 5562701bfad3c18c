"""(#15) One person, one call: a number and its other forms (a personal JID; a Brazilian mobile's
old WhatsApp id without the ninth digit) are one person for the journal's dedupe, on both stores,
across runs and in the dry run, and a journal written before keeps resuming with nobody called
twice. The fake server's record is the oracle."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ryze_async import Campaign, CampaignPlan, CampaignSummary, RyzeClient, normalize_number
from ryze_async._campaign.inputs import person_key
from ryze_async._campaign.journal.schema import rekey
from ryze_async._campaign.rules.optouts import Exclusions
from ryze_async.testing import FakeRyzeServer

from .conftest import examples

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
TOKEN = "test-token"
FIXTURES = Path(__file__).parent / "fixtures"
JID = "@s.whatsapp.net"
NEW_FORM = "5511987654321"
OLD_JID = "551187654321" + JID


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(token=TOKEN, rate_limit=None)


def write(path: Path, numbers: list[str]) -> None:
    path.write_text("number\n" + "\n".join(numbers) + "\n")


def append(path: Path, numbers: list[str]) -> None:
    with path.open("a") as f:
        f.write("\n".join(numbers) + "\n")


async def run(server: FakeRyzeServer, numbers: Path, journal: Any, campaign: str | None,
              ) -> CampaignSummary:
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None) as client:
        return await Campaign(client, numbers, journal=journal, campaign=campaign, fake=True,
                              concurrency=2).run()


async def plan(server: FakeRyzeServer, numbers: Path, journal: Any, campaign: str | None,
               ) -> CampaignPlan:
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None) as client:
        return await Campaign(client, numbers, journal=journal, campaign=campaign,
                              fake=True).dry_run()


def called(server: FakeRyzeServer) -> list[str]:
    return [str(r.json["number"]) for r in server.requests]


# The person key -------------------------------------------------------------------------------

def test_the_forms_of_one_person_share_a_key() -> None:
    assert person_key(NEW_FORM) == person_key(OLD_JID) == person_key(NEW_FORM + JID)
    # Every Brazilian area code, and the old mobile ranges 6 to 9.
    assert person_key("556198765432" + JID) == person_key("5561998765432")
    # 7 is ambiguous (an old mobile range; some 8-digit 7 numbers are assigned today): merged,
    # so an opt-out of either form covers both (fail closed) and neither is called twice.
    assert person_key("551176543210" + JID) == person_key("5511976543210")
    assert person_key("551176543210") == person_key("5511976543210")
    assert person_key("559966543210" + JID) == person_key("5599966543210")
    assert person_key("4930123456" + JID) == person_key("4930123456")


@pytest.mark.parametrize(("one", "other"), [
    ("5511923456789", "551123456789" + JID),  # a mobile and a landline (2-5): two people
    ("5511953456789", "551153456789"),
    ("5510987654321", "551087654321" + JID),  # no area code 10
    ("5501987654321", "550187654321" + JID),
    ("351987654321", "3518765432" + JID),  # the ninth-digit rule is Brazil's alone
    ("5511987654321", "5511987654321@lid"),  # a LID is not a phone number
])
def test_different_people_keep_different_keys(one: str, other: str) -> None:
    assert person_key(one) != person_key(other)


async def test_an_opt_out_list_names_people_by_the_same_rule(tmp_path: Path) -> None:
    optout = tmp_path / "optout.csv"
    write(optout, [OLD_JID, "5511923456789"])
    exclusions = Exclusions([optout], normalize_number)
    await exclusions.refresh()
    assert exclusions.holds(NEW_FORM)
    assert exclusions.holds("5511987654321" + JID)
    assert exclusions.holds("5511923456789" + JID)
    # A landline with the same 8 digits as the mobile on the list: someone else.
    assert not exclusions.holds("551123456789" + JID)
    assert not exclusions.holds("551123456789")


def test_rekeying_keeps_the_row_called_for_a_person() -> None:
    # (id, number, state): the kept row is the first called one, else the first pending one.
    plan = rekey([(1, NEW_FORM, "pending"), (2, OLD_JID, "unknown"),
                  (3, "5521987650000", "skipped"), (4, "552187650000" + JID, "pending"),
                  (5, "4930123456", "placed")])
    assert plan == {1: (NEW_FORM + "#1", 2), 2: (NEW_FORM, None),
                    3: ("5521987650000#3", 4), 4: ("5521987650000", None),
                    5: ("4930123456", None)}


# One run, a later run, the dry run -----------------------------------------------------------

async def test_both_forms_in_one_input_are_called_once(server: FakeRyzeServer,
                                                       tmp_path: Path) -> None:
    numbers = tmp_path / "n.csv"
    write(numbers, [NEW_FORM, "4930123456", OLD_JID])
    predicted = await plan(server, numbers, tmp_path / "j.db", None)
    assert (predicted.now, predicted.duplicates) == (2, 1)
    summary = await run(server, numbers, tmp_path / "j.db", None)
    assert sorted(called(server)) == ["4930123456", NEW_FORM]  # the first form, in input order
    assert (summary.placed, summary.duplicates, summary.total) == (2, 1, 3)


@pytest.mark.parametrize("how", ["append", "new input"])
async def test_the_second_form_in_a_later_run_is_not_called(server: FakeRyzeServer,
                                                            tmp_path: Path, how: str) -> None:
    numbers, journal = tmp_path / "n.csv", tmp_path / "j.db"
    write(numbers, [OLD_JID])
    await run(server, numbers, journal, None)
    assert called(server) == [OLD_JID]
    if how == "append":
        append(numbers, [NEW_FORM, "4930123456"])
    else:
        write(numbers, [NEW_FORM, "4930123456"])
    predicted = await plan(server, numbers, journal, None)
    assert predicted.now == 1
    await run(server, numbers, journal, None)
    assert called(server) == [OLD_JID, "4930123456"]


@pytest.mark.infra
@pytest.mark.parametrize("how", ["one run", "append", "new input"])
async def test_postgresql_calls_the_two_forms_person_once(
        server: FakeRyzeServer, tmp_path: Path, pg_dsn: str, how: str) -> None:
    numbers, name = tmp_path / "n.csv", f"p-{uuid.uuid4().hex[:10]}"
    write(numbers, [NEW_FORM, OLD_JID] if how == "one run" else [NEW_FORM])
    await run(server, numbers, pg_dsn, name)
    if how == "append":
        append(numbers, [OLD_JID, "4930123456"])
    elif how == "new input":
        write(numbers, [OLD_JID, "4930123456"])
    if how != "one run":
        assert (await plan(server, numbers, pg_dsn, name)).now == 1
        await run(server, numbers, pg_dsn, name)
    assert sorted(called(server)) == sorted([NEW_FORM] + ([] if how == "one run"
                                                          else ["4930123456"]))


# A journal written before person keys ---------------------------------------------------------

#: The rows of ``fixtures/two_forms_v4.db`` (made by ``make_two_forms_v4.py`` with the release
#: before): (line, number, state). Lines 2/3, 4/5 and 6/7 are one person each.
OLD_ROWS = [
    (2, "5511987654321", "placed"), (3, "551187654321" + JID, "pending"),
    (4, "556198765432" + JID, "placed"), (5, "5561998765432", "pending"),
    (6, "5521987650000", "pending"), (7, "552187650000" + JID, "pending"),
    (8, "5511923456789", "pending"), (9, "551123456789" + JID, "pending"),
    (10, "4930123456", "pending"),
]
#: Who the resumed run calls: the first of the pair nobody was called for, and the others.
OLD_CALLED = ["5521987650000", "5511923456789", "551123456789" + JID, "4930123456"]


def rows(journal: Path) -> list[tuple[int, str, str, str | None]]:
    db = sqlite3.connect(journal)
    try:
        return db.execute("SELECT line, number, state, error FROM numbers ORDER BY line").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("edit", ["as it was", "appended"])
async def test_an_old_sqlite_journal_migrates_and_resumes(server: FakeRyzeServer,
                                                          tmp_path: Path, edit: str) -> None:
    numbers, journal = tmp_path / "n.csv", tmp_path / "j.db"
    shutil.copy(FIXTURES / "two_forms_v4.csv", numbers)
    shutil.copy(FIXTURES / "two_forms_v4.db", journal)
    assert [(line, n, s) for line, n, s, _ in rows(journal)] == OLD_ROWS
    if edit == "appended":  # a third form of a person already called, and of one not yet
        append(numbers, ["5561998765432" + JID, "5521987650000" + JID])
    predicted = await plan(server, numbers, journal, None)
    assert predicted.now == len(OLD_CALLED)
    summary = await run(server, numbers, journal, None)
    assert sorted(called(server)) == sorted(OLD_CALLED)
    after = {line: (state, error) for line, _, state, error in rows(journal)}
    # Both rows' history is kept; the second of a pair is never called.
    assert after[2][0] == after[4][0] == "placed"
    for second, first in ((3, 2), (5, 4), (7, 6)):
        assert after[second][0] == "skipped"
        assert f"same person as line {first}" in str(after[second][1])
    assert summary.placed == 2 + len(OLD_CALLED)
    # A second resume calls nobody.
    await run(server, numbers, journal, None)
    assert len(called(server)) == len(OLD_CALLED)


@pytest.mark.infra
async def test_an_old_postgresql_journal_migrates_and_resumes(
        server: FakeRyzeServer, tmp_path: Path, pg_dsn: str) -> None:
    import asyncpg

    from ryze_async._campaign.journal import postgres as _postgres_sql

    numbers, name = tmp_path / "n.csv", f"old-{uuid.uuid4().hex[:10]}"
    shutil.copy(FIXTURES / "two_forms_v4.csv", numbers)
    position = sqlite3.connect(FIXTURES / "two_forms_v4.db").execute(
        "SELECT group_concat(value, '|') FROM meta WHERE key IN "
        "('ingest_offset', 'ingest_line', 'ingest_digest') ORDER BY key").fetchone()[0]
    digest, line, offset = position.split("|")
    conn = await asyncpg.connect(pg_dsn)
    try:
        # The schema and rows as the release before wrote them: keys are the digits.
        await conn.execute(_postgres_sql.SCHEMA)
        await conn.execute(_postgres_sql.MIGRATE)
        await conn.execute(
            "INSERT INTO ryze_campaigns (campaign, kind, media, instance, ingest_offset, "
            "ingest_line, ingest_digest) VALUES ($1, 'fake', '', 'my-instance', $2, $3, $4)",
            name, int(offset), int(line), digest)
        for at, number, state in OLD_ROWS:
            await conn.execute(
                "INSERT INTO ryze_numbers (campaign, number, key, valid, state, line, attempts) "
                "VALUES ($1, $2, $3, true, $4, $5, $6)", name, number,
                number.removesuffix(JID), state, at, int(state == "placed"))
    finally:
        await conn.close()
    predicted = await plan(server, numbers, pg_dsn, name)
    assert predicted.now == len(OLD_CALLED)
    await run(server, numbers, pg_dsn, name)
    assert sorted(called(server)) == sorted(OLD_CALLED)
    conn = await asyncpg.connect(pg_dsn)
    try:
        after = {r["line"]: (r["state"], r["error"]) for r in await conn.fetch(
            "SELECT line, state, error FROM ryze_numbers WHERE campaign = $1", name)}
    finally:
        await conn.close()
    for second, first in ((3, 2), (5, 4), (7, 6)):
        assert after[second][0] == "skipped"
        assert f"same person as line {first}" in str(after[second][1])
    await run(server, numbers, pg_dsn, name)
    assert len(called(server)) == len(OLD_CALLED)


# A property: forms of a few persons, split across runs ----------------------------------------

# The oracle: persons as the documented rule sees them, written without the production
# function. A person is an area code and a subscriber number; ``forms`` are the ways the input
# may write them. Persons are picked to share digits: a mobile 9 2345-6789 and a landline
# 2345-6789 in one area; the ambiguous 8-digit 7654-3210 is taken as the mobile 9 7654-3210.
PERSONS: list[list[str]] = [
    ["5511987654321", "5511987654321" + JID, "551187654321" + JID],  # old mobile range 8
    ["5521966665555", "552166665555" + JID],  # old mobile range 6
    ["5561999990000", "5561999990000" + JID, "556199990000" + JID],  # range 9
    ["5511923456789", "5511923456789" + JID],  # a mobile 9 + 2...
    ["551123456789", "551123456789" + JID],  # the landline with the same 8 digits
    ["5511976543210", "5511976543210" + JID, "551176543210" + JID],  # 9 + 7..., merged
    ["4930123456", "4930123456" + JID],
]


async def runs_on(journal: Path, parts: list[list[str]]) -> list[str]:
    async with FakeRyzeServer(rate_limit=None) as server:
        numbers = journal.parent / "n.csv"
        numbers.write_text("number\n")
        for part in filter(None, parts):
            append(numbers, part)
            async with RyzeClient(TOKEN, "my-instance", base_url=server.url,
                                  rate_limit=None) as client:
                await Campaign(client, numbers, journal=journal, fake=True, concurrency=3).run()
        return called(server)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(picks=st.lists(st.tuples(st.integers(0, len(PERSONS) - 1), st.integers(0, 2)),
                      min_size=1, max_size=12),
       cuts=st.lists(st.integers(0, 12), max_size=2))
def test_each_person_is_called_once_and_never_merged(picks: list[tuple[int, int]],
                                                     cuts: list[int]) -> None:
    entries = [(who, PERSONS[who][form % len(PERSONS[who])]) for who, form in picks]
    bounds = [0, *sorted(min(c, len(entries)) for c in cuts), len(entries)]
    parts = [[n for _, n in entries[a:b]] for a, b in itertools.pairwise(bounds)]
    with tempfile.TemporaryDirectory() as tmp:
        calls = asyncio.run(runs_on(Path(tmp) / "j.db", parts))
    owner = {form: who for who, forms in enumerate(PERSONS) for form in forms}
    reached = [owner[number] for number in calls]
    assert sorted(reached) == sorted(set(reached))  # nobody twice
    assert set(reached) == {who for who, _ in entries}  # nobody merged away
    # The form called is the first the input held for that person.
    first: dict[int, str] = {}
    for who, number in entries:
        first.setdefault(who, number)
    assert sorted(calls) == sorted(first.values())
