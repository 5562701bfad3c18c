"""A pool of senders in one campaign (issue 9.3): every number through exactly one instance,
a disconnected instance leaves the rotation while the others finish, the last one leaving
trips the breaker (exit 3), and the tokens appear nowhere. The fake server's own record of
requests is the oracle of who was called, through which instance."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ryze_async import Campaign, RyzeClient
from ryze_async.testing import FakeRyzeServer

from .cli_helpers import run_cli
from .test_held_rows import SCHEMA_3

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
TOKENS = {"inst-a": "tok-AAAA-0123456789abcdef", "inst-b": "tok-BBBB-0123456789abcdef",
          "inst-c": "tok-CCCC-0123456789abcdef"}


@pytest.fixture
async def pool_server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    server = await ryze_server_factory(rate_limit=None, token=TOKENS["inst-a"],
                                       tokens=list(TOKENS.values()), instances=list(TOKENS))
    server.disconnect_instance("inst-b")
    return server


def numbers(count: int) -> list[str]:
    return [f"55119{i:08d}" for i in range(count)]


def placed_by(server: FakeRyzeServer) -> dict[str, list[str]]:
    """number -> the instances its placed calls went through (the server's record)."""
    seen: dict[str, list[str]] = {}
    for r in server.placed_calls:
        seen.setdefault(r.json["number"], []).append(str(r.instance))
    return seen


def journal_rows(journal: Path) -> dict[str, tuple[str, str | None]]:
    conn = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {n: (s, snd) for n, s, snd in conn.execute(
            "SELECT number, state, sender FROM numbers WHERE valid = 1")}
    finally:
        conn.close()


def assert_no_token(*texts: str | bytes) -> None:
    for text in texts:
        data = text if isinstance(text, bytes) else text.encode()
        for token in TOKENS.values():
            assert token.encode() not in data
            assert b"0123456789abcdef" not in data


def files_in(folder: Path, but: str = "") -> list[bytes]:
    """Every file we wrote (journal, -wal, exports), to search for a token."""
    return [p.read_bytes() for p in folder.iterdir() if p.name != but]


def base_client(server: FakeRyzeServer) -> RyzeClient:
    return RyzeClient(TOKENS["inst-a"], "inst-a", base_url=server.url, rate_limit=None)


async def test_a_disconnected_instance_leaves_and_the_others_finish(
    pool_server: FakeRyzeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    wanted = numbers(60)
    journal = tmp_path / "j.db"
    async with base_client(pool_server) as client:
        campaign = Campaign(client, wanted, journal=journal, fake=True, concurrency=6,
                            senders=TOKENS)
        summary = await campaign.run()
    assert (summary.placed, summary.pending, summary.unknown, summary.failed) == (60, 0, 0, 0)
    assert summary.stop_reason == "completed"
    assert "sender 'inst-b' left the rotation" in summary.message
    assert "left the rotation" in caplog.text
    by_server = placed_by(pool_server)
    assert sorted(by_server) == sorted(wanted)  # everyone, nobody else
    assert all(len(v) == 1 for v in by_server.values())  # exactly once
    used = Counter(v[0] for v in by_server.values())
    assert set(used) == {"inst-a", "inst-c"}
    assert min(used.values()) > 5  # both did work
    rows = journal_rows(journal)
    assert {n: s for n, (_, s) in rows.items()} == {n: v[0] for n, v in by_server.items()}
    out = io.StringIO()
    async with base_client(pool_server):
        from ryze_async._campaign.journal import open_journal
        store = await open_journal(journal, create=False, read_only=True)
        try:
            await store.export_csv(out)
        finally:
            await store.close()
    exported = {r["number"]: r["sender"] for r in csv.DictReader(io.StringIO(out.getvalue()))}
    assert exported == {n: v[0] for n, v in by_server.items()}
    assert_no_token(summary.message, caplog.text, out.getvalue(), repr(campaign),
                    *files_in(tmp_path))


async def test_the_last_sender_leaving_trips_the_breaker_and_the_rest_stays_pending(
    pool_server: FakeRyzeServer, tmp_path: Path,
) -> None:
    pool_server.disconnect_instance("inst-a")
    pool_server.disconnect_instance("inst-c", 400)
    async with base_client(pool_server) as client:
        summary = await Campaign(client, numbers(30), journal=tmp_path / "j.db", fake=True,
                                 concurrency=6, senders=TOKENS).run()
    assert summary.stop_reason == "circuit_breaker"
    assert (summary.placed, summary.pending, summary.unknown) == (0, 30, 0)
    assert "no sender left" in summary.message
    for name in TOKENS:
        assert f"sender {name!r} left the rotation" in summary.message
    assert not pool_server.placed_calls
    # Each instance was tried, and none more than the calls in flight when it tripped.
    assert {r.instance for r in pool_server.requests} == set(TOKENS)
    assert_no_token(summary.message)


async def test_senders_on_one_token_share_its_quota(pool_server: FakeRyzeServer) -> None:
    base = RyzeClient("one-token", "x", base_url=pool_server.url, rate_limit=5)
    same_a, same_b = base.for_sender("one-token", "a"), base.for_sender("one-token", "b")
    other = base.for_sender("other-token", "c")
    try:
        assert same_a._quota() is same_b._quota() is base._quota()
        assert other._quota() is not base._quota()
        assert "one-token" not in repr(same_a)
    finally:
        for c in (base, same_a, same_b, other):
            await c.aclose()


def senders_file(tmp_path: Path, mode: int, rows: dict[str, str] = TOKENS) -> Path:
    path = tmp_path / "senders.csv"
    path.write_text("instance,token\n" + "".join(f"{k},{v}\n" for k, v in rows.items()),
                    encoding="utf-8")
    path.chmod(mode)
    return path


def cli_args(server: FakeRyzeServer, tmp_path: Path, senders: Path, count: int) -> list[str]:
    listing = tmp_path / "numbers.csv"
    listing.write_text("number\n" + "".join(f"{n}\n" for n in numbers(count)),
                       encoding="utf-8")
    return ["campaign", str(listing), "--fake", "--journal", str(tmp_path / "j.db"),
            "--senders", str(senders), "--base-url", server.url, "--concurrency", "6"]


async def test_cli_pool_finishes_on_the_connected_instances(
    pool_server: FakeRyzeServer, tmp_path: Path,
) -> None:
    # A quota small enough that every sender joins (staggered over the period) and works: at
    # 5 per 0.1 s inst-a alone would need 0.6 s, long after the others' joins (at most 0.1 s).
    args = [*cli_args(pool_server, tmp_path, senders_file(tmp_path, 0o600), 30),
            "--rate-limit", "5", "--rate-period", "0.1"]
    code, out, err = await run_cli(args, {})
    assert code == 0, out + err
    assert "3 senders: 'inst-a', 'inst-b', 'inst-c'" in out
    assert "sender 'inst-b' left the rotation" in out + err
    by_server = placed_by(pool_server)
    assert len(by_server) == 30
    assert {v[0] for v in by_server.values()} == {"inst-a", "inst-c"}
    assert all(len(v) == 1 for v in by_server.values())
    code, report, rerr = await run_cli(["report", str(tmp_path / "j.db"), "--csv", "-"], {})
    assert code == 0, report + rerr
    exported = {r["number"]: r["sender"] for r in csv.DictReader(io.StringIO(report))}
    assert exported == {n: v[0] for n, v in by_server.items()}
    code, summary, _ = await run_cli(["report", str(tmp_path / "j.db")], {})
    assert_no_token(out, err, report, summary,
                    *files_in(tmp_path, but="senders.csv"))


async def test_cli_no_sender_left_is_exit_3(
    pool_server: FakeRyzeServer, tmp_path: Path,
) -> None:
    pool_server.disconnect_instance("inst-a")
    pool_server.disconnect_instance("inst-c")
    # Late senders join staggered over the quota period: a short period keeps this short.
    args = [*cli_args(pool_server, tmp_path, senders_file(tmp_path, 0o600), 20),
            "--rate-limit", "5", "--rate-period", "0.1"]
    code, out, err = await run_cli(args, {})
    assert code == 3, out + err
    assert not pool_server.placed_calls
    assert journal_rows(tmp_path / "j.db").keys() == set(numbers(20))
    assert {s for s, _ in journal_rows(tmp_path / "j.db").values()} == {"pending"}
    assert_no_token(out, err)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
async def test_cli_refuses_a_senders_file_others_may_read(
    pool_server: FakeRyzeServer, tmp_path: Path, mode: int,
) -> None:
    args = cli_args(pool_server, tmp_path, senders_file(tmp_path, mode), 5)
    code, out, err = await run_cli(args, {})
    assert code == 2
    assert "owner-only" in err
    assert "chmod 600" in err
    assert not pool_server.requests
    assert not (tmp_path / "j.db").exists()
    assert_no_token(out, err)


@pytest.mark.parametrize("content", [
    "instance,token\ninst-a,\n", "name,secret\ninst-a,tok-AAAA-0123456789abcdef\n",
    "instance,token\ninst-a,tok-AAAA-0123456789abcdef\ninst-a,tok-AAAA-0123456789abcdef\n",
    "instance,token\n",
])
async def test_cli_refuses_a_malformed_senders_file_without_echoing_it(
    pool_server: FakeRyzeServer, tmp_path: Path, content: str,
) -> None:
    path = tmp_path / "senders.csv"
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    code, out, err = await run_cli(cli_args(pool_server, tmp_path, path, 5), {})
    assert code == 2, out + err
    assert "--senders" in err
    assert not pool_server.requests
    assert_no_token(out, err)


def test_a_schema_2_journal_gains_the_sender_column(tmp_path: Path) -> None:
    journal = tmp_path / "old.db"
    conn = sqlite3.connect(journal)
    conn.executescript(SCHEMA_3.replace(",\n    sender      TEXT\n", "\n").replace("'3'", "'2'"))
    conn.execute("INSERT INTO numbers(number, key, valid, state, line) "
                 "VALUES ('5511900000001', '5511900000001', 1, 'placed', 2)")
    conn.commit()
    conn.close()

    async def reopen() -> None:
        from ryze_async._campaign.journal import open_journal
        store = await open_journal(journal)
        await store.close()

    asyncio.run(reopen())
    conn = sqlite3.connect(journal)
    try:
        assert conn.execute("SELECT number, state, sender FROM numbers").fetchall() == [
            ("5511900000001", "placed", None)]
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("4",)
    finally:
        conn.close()


def test_a_pool_needs_a_client_that_builds_senders(tmp_path: Path) -> None:
    class Stub:
        async def audio_call(self, *a: object, **k: object) -> object: ...
        async def fake_call(self, *a: object, **k: object) -> object: ...

    with pytest.raises(TypeError, match="for_sender"):
        Campaign(Stub(), [], journal=tmp_path / "j.db", fake=True,  # type: ignore[arg-type]
                 senders={"a": "t"})
    with pytest.raises(ValueError, match="senders"):
        Campaign(Stub(), [], journal=tmp_path / "j.db", fake=True,  # type: ignore[arg-type]
                 senders={})
    logging.getLogger(__name__).debug("done")


def test_senders_join_staggered_over_the_period() -> None:
    """Sender k of n joins k * period / n after the first: n small bursts, not one big one."""
    from ryze_async._campaign.senders import Sender, SenderPool
    from ryze_async.testing import run_virtual

    async def scenario() -> list[tuple[float, str | None]]:
        loop = asyncio.get_running_loop()
        pool = SenderPool([Sender(f"s{k}", None) for k in range(4)], 2)  # type: ignore[arg-type]
        pool.start(8.0)
        start, joined = loop.time(), []
        for _ in range(8):
            lease = await pool.take()
            joined.append((round(loop.time() - start, 6), lease.sender.name))
        pool.close()
        return joined

    joined = run_virtual(scenario())
    assert joined == [(0.0, "s0"), (0.0, "s0"), (2.0, "s1"), (2.0, "s1"), (4.0, "s2"),
                      (4.0, "s2"), (6.0, "s3"), (6.0, "s3")]


async def test_an_instance_lost_mid_run_hands_its_numbers_to_the_others(
    pool_server: FakeRyzeServer, tmp_path: Path,
) -> None:
    """inst-c disconnects after 15 placed calls: nobody is called twice, everyone once."""
    wanted = numbers(80)
    done = 0

    async def on_result(_: object) -> None:
        nonlocal done
        done += 1
        if done == 15:
            pool_server.disconnect_instance("inst-c")

    async with base_client(pool_server) as client:
        summary = await Campaign(client, wanted, journal=tmp_path / "j.db", fake=True,
                                 concurrency=8, senders=TOKENS).run(on_result)
    assert (summary.placed, summary.pending, summary.unknown) == (80, 0, 0)
    by_server = placed_by(pool_server)
    assert sorted(by_server) == sorted(wanted)
    assert all(len(v) == 1 for v in by_server.values())
    used = Counter(v[0] for v in by_server.values())
    assert used["inst-c"] >= 1  # it placed some before it went
    assert "sender 'inst-c' left the rotation" in summary.message
    refused_c = [r for r in pool_server.requests if r.instance == "inst-c" and r.status != 200]
    assert refused_c  # the breaker saw it
    rows = journal_rows(tmp_path / "j.db")
    assert {n: s for n, (_, s) in rows.items()} == {n: v[0] for n, v in by_server.items()}


async def test_cli_senders_with_instance_or_token_is_a_usage_error(
    pool_server: FakeRyzeServer, tmp_path: Path,
) -> None:
    args = cli_args(pool_server, tmp_path, senders_file(tmp_path, 0o600), 3)
    for extra in (["--instance", "inst-a"], ["--token", TOKENS["inst-a"]]):
        code, out, err = await run_cli([*args, *extra], {})
        assert code == 2, out + err
        assert "drop --instance/--token" in err
    assert not pool_server.requests
