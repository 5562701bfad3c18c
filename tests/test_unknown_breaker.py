"""The circuit breaker on unknown outcomes (issue 10): when K outcomes in a row of one sender
may have been placed (no RyzeAPI answer in between: a proxy's 502 page, a redirect, a hang-up, a
timeout), the cause is systematic and the sender trips, instead of turning a whole list into
``unknown``. The servers' own records are the oracle of who was called, and how many times."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ryze_async import Campaign, RyzeClient
from ryze_async.testing import FakeRyzeServer, Fault, run_virtual

from .byte_server import ByteServer, byte_server, canned
from .cli_helpers import run_cli
from .conftest import examples

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
PROXY_PAGE = (b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad "
              b"Gateway</h1></center><hr><center>nginx</center></body></html>")


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(rate_limit=None)


def numbers(count: int) -> list[str]:
    return [f"55119{i:08d}" for i in range(count)]


def client_for(url: str, **kwargs: Any) -> RyzeClient:
    options: dict[str, Any] = {"token": "test-token", "instance": "my-instance",
                               "base_url": url, "rate_limit": None}
    options.update(kwargs)
    return RyzeClient(**options)


def dialed(server: FakeRyzeServer) -> Counter[str]:
    return Counter(r.json["number"] for r in server.requests if r.route in ("audio", "fake"))


def byte_dialed(server: ByteServer) -> Counter[tuple[str, str]]:
    """(instance, number) of every request the byte-level server read."""
    seen: Counter[tuple[str, str]] = Counter()
    for raw in server.requests:
        head, _, body = raw.partition(b"\r\n\r\n")
        instance = head.split(b" ", 2)[1].rsplit(b"/", 1)[1].decode()
        seen[(instance, json.loads(body)["number"])] += 1
    return seen


def placed_answer(body: bytes) -> bytes:
    number = json.loads(body)["number"]
    answer = {"success": True, "message": "Call placed successfully", "callId": f"C{number}",
              "number": number, "duration": 10}
    return canned(200, json.dumps(answer).encode(), "application/json")


def scripted(bad: Callable[[int, bytes], bool]) -> Callable[[ByteServer], Handler]:
    """A proxy's 502 page where ``bad(index, request head)``, else RyzeAPI's success."""
    def answer(state: ByteServer) -> Handler:
        index = len(state.requests) - 1
        head, _, body = state.requests[-1].partition(b"\r\n\r\n")

        async def write(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(canned(502, PROXY_PAGE) if bad(index, head) else placed_answer(body))
            await writer.drain()
        return write
    return answer


# -- one sender -------------------------------------------------------------------------------


async def test_every_answer_a_proxy_502_stops_after_k_unknowns_and_a_resume_calls_the_rest(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    server.set_fault(Fault.HTML_502)
    wanted, journal = numbers(50), tmp_path / "j.db"
    async with client_for(server.url) as client:
        # The default K (5), with the default concurrency (10): calls already in flight when
        # it trips end as they end, so at most K + concurrency - 1 end unknown.
        s = await Campaign(client, wanted, journal=journal, fake=True).run()
    assert s.stop_reason == "circuit_breaker"
    assert "5 outcomes in a row were unknown" in s.message
    assert "run the same command again to resume" in s.message
    assert 5 <= s.unknown <= 5 + 10 - 1
    assert (s.placed, s.failed, s.pending) == (0, 0, 50 - s.unknown)
    first = dialed(server)
    assert len(first) == s.unknown
    assert set(first.values()) == {1}
    assert set(first) <= set(wanted)

    server.set_fault(None)  # the proxy is fixed
    async with client_for(server.url) as client:
        again = await Campaign(client, wanted, journal=journal, fake=True).run()
    assert again.stop_reason == "completed"
    assert (again.placed, again.unknown, again.pending) == (50 - s.unknown, s.unknown, 0)
    both = dialed(server)
    assert sorted(both) == sorted(wanted)
    assert set(both.values()) == {1}


@pytest.mark.parametrize("fault", [Fault.HTML_502, Fault.REDIRECT, Fault.DROP_AFTER_READ,
                                   Fault.TRUNCATED, Fault.HANG])
def test_each_kind_of_unknown_trips_after_exactly_k_with_one_call_at_a_time(
    tmp_path: Path, fault: Fault,
) -> None:
    # On the virtual clock: three hangs' timeouts cost no real time.
    async def main() -> None:
        async with FakeRyzeServer(rate_limit=None) as server:
            server.set_fault(fault)
            async with client_for(server.url, timeout=0.3) as client:
                s = await Campaign(client, numbers(30), journal=tmp_path / "j.db", fake=True,
                                   concurrency=1, max_unknown_in_a_row=3).run()
        assert s.stop_reason == "circuit_breaker", s.message
        assert (s.unknown, s.pending, s.placed, s.failed) == (3, 27, 0, 0)
        assert dialed(server) == Counter(numbers(3))

    run_virtual(main(), start=1000.0)


async def test_a_proxy_page_from_a_byte_level_server_trips_the_breaker(tmp_path: Path) -> None:
    async with byte_server(canned(502, PROXY_PAGE)) as proxy, client_for(proxy.url) as client:
        s = await Campaign(client, numbers(50), journal=tmp_path / "j.db", fake=True,
                           concurrency=2, max_unknown_in_a_row=4).run()
    assert s.stop_reason == "circuit_breaker"
    assert 4 <= s.unknown <= 5
    assert s.pending == 50 - s.unknown
    assert len(proxy.requests) == s.unknown
    assert set(byte_dialed(proxy).values()) == {1}


async def test_unknowns_interleaved_with_placed_calls_do_not_trip(tmp_path: Path) -> None:
    # Two unknowns, then a placed call, again and again: never three unknowns in a row.
    async with byte_server(scripted(lambda i, _: i % 3 != 2)) as proxy, \
            client_for(proxy.url) as client:
        s = await Campaign(client, numbers(30), journal=tmp_path / "j.db", fake=True,
                           concurrency=1, max_unknown_in_a_row=3).run()
    assert s.stop_reason == "completed", s.message
    assert (s.unknown, s.placed, s.pending) == (20, 10, 0)
    assert len(byte_dialed(proxy)) == 30
    assert set(byte_dialed(proxy).values()) == {1}


async def test_unknowns_interleaved_with_failed_answers_do_not_trip(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    for _ in range(6):  # a 500 in RyzeAPI's envelope is an answer: it resets the count
        server.fail_next(Fault.HTML_502, times=2)
        server.fail_next(Fault.SERVER_ERROR)
    async with client_for(server.url) as client:
        s = await Campaign(client, numbers(18), journal=tmp_path / "j.db", fake=True,
                           concurrency=1, max_unknown_in_a_row=3).run()
    assert s.stop_reason == "completed", s.message
    assert (s.unknown, s.failed, s.placed) == (12, 6, 0)


FAILED_ANSWER = canned(500, b'{"success":false,"error":{"message":"internal failure"}}',
                       "application/json")


async def _script_run(script: str, k: int) -> None:
    """One call at a time, request i answered as ``script[i]`` says: u a proxy's page (unknown),
    p placed, f RyzeAPI's 500 envelope (failed). The run must stop exactly at the first K-th
    unknown in a row, every request before it answered once, the rest never sent."""
    def answer(state: ByteServer) -> Handler:
        kind = script[len(state.requests) - 1]
        body = state.requests[-1].partition(b"\r\n\r\n")[2]
        raw = {"u": canned(502, PROXY_PAGE), "f": FAILED_ANSWER}.get(kind) or placed_answer(body)

        async def write(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(raw)
            await writer.drain()
        return write

    trip = script.find("u" * k) if k else -1
    sent = script if trip < 0 else script[:trip + k]
    with tempfile.TemporaryDirectory() as tmp:
        async with byte_server(answer) as proxy, client_for(proxy.url) as client:
            s = await Campaign(client, numbers(len(script)), journal=Path(tmp) / "j.db",
                               fake=True, concurrency=1, max_unknown_in_a_row=k).run()
    assert s.stop_reason == ("completed" if trip < 0 else "circuit_breaker"), s.message
    assert (s.unknown, s.placed, s.failed) == (sent.count("u"), sent.count("p"),
                                               sent.count("f"))
    assert s.pending == len(script) - len(sent)
    assert byte_dialed(proxy) == Counter(("my-instance", n) for n in numbers(len(sent)))


@settings(max_examples=examples(30), deadline=None)
@given(script=st.text(alphabet="upf", min_size=1, max_size=25), k=st.integers(0, 4))
def test_it_trips_exactly_at_the_first_k_unknowns_in_a_row(script: str, k: int) -> None:
    asyncio.run(_script_run(script, k))


@pytest.mark.parametrize("off", [0, None])
async def test_the_breaker_can_be_turned_off(
    server: FakeRyzeServer, tmp_path: Path, off: int | None,
) -> None:
    server.set_fault(Fault.HTML_502)
    async with client_for(server.url) as client:
        s = await Campaign(client, numbers(20), journal=tmp_path / "j.db", fake=True,
                           concurrency=2, max_unknown_in_a_row=off).run()
    assert s.stop_reason == "completed"
    assert s.unknown == 20


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", float("nan")])
def test_a_bad_limit_is_refused_at_construction(tmp_path: Path, bad: object) -> None:
    client = client_for("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="max_unknown_in_a_row"):
        Campaign(client, numbers(1), journal=tmp_path / "j.db", fake=True,
                 max_unknown_in_a_row=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "j.db").exists()


# -- a pool of senders --------------------------------------------------------------------------


TOKENS = {"inst-a": "tok-AAAA-0123456789abcdef", "inst-bad": "tok-BBBB-0123456789abcdef",
          "inst-c": "tok-CCCC-0123456789abcdef"}


async def test_in_a_pool_the_bad_sender_leaves_the_rotation_and_the_others_finish(
    tmp_path: Path,
) -> None:
    wanted = numbers(60)
    async with byte_server(scripted(lambda _, head: b"/inst-bad " in head)) as proxy, \
            client_for(proxy.url) as client:
        s = await Campaign(client, wanted, journal=tmp_path / "j.db", fake=True,
                           concurrency=6, senders=TOKENS, max_unknown_in_a_row=3).run()
    assert s.stop_reason == "completed", s.message
    assert "sender 'inst-bad' left the rotation: 3 outcomes in a row were unknown" in s.message
    seen = byte_dialed(proxy)
    assert set(seen.values()) == {1}  # nobody twice, whatever the sender
    assert sorted(n for _, n in seen) == sorted(wanted)
    bad = [n for inst, n in seen if inst == "inst-bad"]
    # What was in flight through it when it tripped ended unknown too: at most concurrency-1.
    assert 3 <= len(bad) <= 3 + 6 - 1
    assert (s.unknown, s.placed, s.pending) == (len(bad), 60 - len(bad), 0)


async def test_in_a_pool_every_sender_unknown_stops_the_run(tmp_path: Path) -> None:
    async with byte_server(canned(502, PROXY_PAGE)) as proxy, client_for(proxy.url) as client:
        s = await Campaign(client, numbers(60), journal=tmp_path / "j.db", fake=True,
                           concurrency=3, senders=TOKENS, max_unknown_in_a_row=2).run()
    assert s.stop_reason == "circuit_breaker"
    assert "no sender left" in s.message
    # Each sender: its 2, plus what was in flight when it tripped (at most concurrency - 1).
    assert s.unknown == len(proxy.requests) <= 3 * (2 + 3 - 1)
    assert all(n >= 2 for n in Counter(i for i, _ in byte_dialed(proxy)).values())
    assert s.pending == 60 - s.unknown
    assert set(byte_dialed(proxy).values()) == {1}


# -- the command line ---------------------------------------------------------------------------


def cli_args(server: FakeRyzeServer, tmp_path: Path, count: int, *more: str) -> list[str]:
    listing = tmp_path / "numbers.csv"
    listing.write_text("number\n" + "".join(f"{n}\n" for n in numbers(count)),
                       encoding="utf-8")
    return ["campaign", str(listing), "--fake", "--journal", str(tmp_path / "j.db"),
            "--base-url", server.url, "--instance", "my-instance", *more]


async def test_cli_stops_with_exit_3_and_a_resume_calls_only_the_pending(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    env = {"RYZE_TOKEN": "test-token"}
    args = cli_args(server, tmp_path, 40, "--concurrency", "1", "--max-unknown-in-a-row", "4")
    server.set_fault(Fault.HTML_502)
    code, out, err = await run_cli(args, env)
    assert code == 3, out + err
    assert "4 outcomes in a row were unknown" in out + err
    assert "run the same command again to resume" in out + err
    assert dialed(server) == Counter(numbers(4))
    server.set_fault(None)
    code, out, err = await run_cli(args, env)
    assert code == 1, out + err  # 4 unknown: a person decides (--retry-unknown)
    assert dialed(server) == Counter(numbers(40))


async def test_cli_option_zero_turns_it_off_and_a_bad_value_is_a_usage_error(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    env = {"RYZE_TOKEN": "test-token"}
    server.set_fault(Fault.HTML_502)
    code, out, err = await run_cli(cli_args(server, tmp_path, 12, "--max-unknown-in-a-row",
                                            "0"), env)
    assert code == 1, out + err
    assert dialed(server) == Counter(numbers(12))
    for bad in ("-1", "x", "2.5"):
        code, out, err = await run_cli(
            cli_args(server, tmp_path, 3, "--max-unknown-in-a-row", bad), env)
        assert code == 2, out + err
    code, out, _ = await run_cli(["campaign", "--help"], env)
    assert code == 0
    assert "--max-unknown-in-a-row" in out
