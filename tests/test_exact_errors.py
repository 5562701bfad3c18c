"""Issue 7 items 5, 10, 13, 14: one "may have been placed" signal, a capped answer, UTC dates,
picklable errors."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import pickle
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ryze_async
from ryze_async import (
    Campaign,
    InstanceNotConnectedError,
    OutcomeUnknownError,
    RateLimitError,
    RateLimitInfo,
    RetryScheduled,
    RyzeClient,
    ServerError,
)
from ryze_async.testing import MockResponse, MockTransport, run_virtual

from .byte_server import ByteServer, byte_server, canned

NUMBER = "5511999999999"
MAX_ANSWER_BYTES = 64 * 1024  # the answer cap docs/errors.md documents
PROXY_DISCONNECTED = b"<html><body><h1>503</h1>upstream disconnected before answering</body></html>"


def client_for(url: str, **kwargs: object) -> RyzeClient:
    options: dict[str, object] = {"token": "test-token", "instance": "my-instance",
                                  "base_url": url, "rate_limit": None, "max_retries": 0}
    options.update(kwargs)
    return RyzeClient(**options)  # type: ignore[arg-type]


def envelope(message: str) -> bytes:
    return json.dumps({"success": False, "error": {"message": message}}).encode()


# -- item 5: one signal ---------------------------------------------------------------------------

@pytest.mark.parametrize("status", [400, 404, 413, 500, 502, 503, 504, 307])
@pytest.mark.parametrize("body", [PROXY_DISCONNECTED, b"", b'{"message": "not connected"}'])
async def test_an_answer_that_is_not_ryzeapis_envelope_is_an_unknown_outcome(
    status: int, body: bytes
) -> None:
    async with byte_server(canned(status, body)) as server, client_for(server.url) as client:
        with pytest.raises(OutcomeUnknownError) as info:
            await client.fake_call(NUMBER)
    assert not isinstance(info.value, InstanceNotConnectedError | ServerError)
    assert info.value.status == status
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [400, 503])
async def test_only_the_envelope_says_not_connected(status: int) -> None:
    answer = canned(status, envelope("Instance is disconnected"), "application/json")
    async with byte_server(answer) as server, client_for(server.url) as client:
        with pytest.raises(InstanceNotConnectedError) as info:
            await client.fake_call(NUMBER)
    assert not isinstance(info.value, OutcomeUnknownError)


async def test_ryzeapis_own_5xx_is_a_server_error_not_placed() -> None:
    answer = canned(500, envelope("internal failure"), "application/json")
    async with byte_server(answer) as server, client_for(server.url) as client:
        with pytest.raises(ServerError) as info:
            await client.fake_call(NUMBER)
    assert not isinstance(info.value, OutcomeUnknownError)
    assert info.value.may_have_been_processed is False


async def test_a_proxy_page_saying_disconnected_ends_unknown_in_a_campaign_and_is_not_redialled(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "j.db"
    async with byte_server(canned(503, PROXY_DISCONNECTED)) as server:
        for _ in range(2):
            async with client_for(server.url) as client:
                summary = await Campaign(client, [NUMBER], journal=journal, fake=True).run()
    assert len(server.requests) == 1  # the rerun did not call the person again
    assert summary.unknown == 1
    assert summary.pending == 0
    assert summary.failed == 0
    conn = sqlite3.connect(journal)
    try:
        assert conn.execute("SELECT state FROM numbers").fetchall() == [("unknown",)]
    finally:
        conn.close()


# -- item 10: the answer's size is capped --------------------------------------------------------

def _streaming(status: int, claimed: int) -> object:
    def factory(state: ByteServer) -> object:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {claimed}\r\n\r\n".encode())
            chunk = b" " * 65536
            sent = 0
            try:
                while sent < claimed:
                    writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
                    await asyncio.sleep(0)
            finally:
                state.written.append(sent)
        return answer
    return factory


@pytest.mark.parametrize("status", [200, 500])
async def test_an_oversize_answer_is_unknown_and_read_no_further(status: int) -> None:
    claimed = 50 * 1024 * 1024
    async with byte_server(_streaming(status, claimed)) as server:  # type: ignore[arg-type]
        async with client_for(server.url, timeout=20) as client:
            with pytest.raises(OutcomeUnknownError) as info:
                await client.fake_call(NUMBER)
        for _ in range(200):
            if server.written:
                break
            await asyncio.sleep(0.01)
    assert info.value.status == status
    assert server.written
    assert server.written[0] < claimed // 4


async def test_an_oversize_answer_without_length_is_cut_at_the_cap() -> None:
    body = b'{"success": true, "message": "' + b"x" * (MAX_ANSWER_BYTES * 4) + b'"}'
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
              + body)
    async with byte_server(answer) as server, client_for(server.url) as client:
        with pytest.raises(OutcomeUnknownError, match="larger than"):
            await client.fake_call(NUMBER)


def _in_pieces(with_length: bool, *pieces: bytes) -> object:
    """An answer whose body is written in ``pieces``, the next one 50 ms after the last (the
    client has read what came by then; a client that reads correctly passes in any order)."""
    def factory(_state: ByteServer) -> object:
        async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            length = f"Content-Length: {sum(map(len, pieces))}\r\n" if with_length else ""
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}"
                         "Connection: close\r\n\r\n".encode())
            for i, piece in enumerate(pieces):
                if i:
                    await asyncio.sleep(0.05)
                writer.write(piece)
                await writer.drain()
        return answer
    return factory


@pytest.mark.parametrize("with_length", [True, False])
async def test_an_answer_that_comes_in_pieces_is_read_whole(with_length: bool) -> None:
    # Issue 18: a small answer is read in one read() when it came whole; one that did not is
    # read on to its end, not taken for the part that came first.
    pieces = (b'{"success": true, "message": "in', b' pieces", "callId": "c', b'1"}')
    factory = _in_pieces(with_length, *pieces)
    async with byte_server(factory) as server, client_for(server.url) as client:  # type: ignore[arg-type]
        result = await client.fake_call(NUMBER)
    assert (result.message, result.call_id) == ("in pieces", "c1")


@pytest.mark.parametrize("with_length", [True, False])
async def test_an_answer_over_the_cap_in_pieces_is_unknown(with_length: bool) -> None:
    # The cap counts every piece: the first fits, the whole does not.
    head = b'{"success": true, "message": "'
    pieces = (head, b"x" * (MAX_ANSWER_BYTES - len(head)), b'"}')
    factory = _in_pieces(with_length, *pieces)
    async with byte_server(factory) as server, client_for(server.url) as client:  # type: ignore[arg-type]
        with pytest.raises(OutcomeUnknownError, match="larger than"):
            await client.fake_call(NUMBER)


# -- item 13: HTTP dates are UTC ------------------------------------------------------------------

@pytest.fixture(params=["UTC+3", "UTC-9", "America/Sao_Paulo", "Asia/Tokyo"])
def local_zone(request: pytest.FixtureRequest) -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.usefixtures("local_zone")
@pytest.mark.parametrize("zone", ["GMT", "-0000", "+0000", "UTC"])
def test_an_http_date_is_utc_whatever_the_local_zone(zone: str) -> None:
    # A 429 whose reset is 60 s after its Date (read as UTC) is sent again 60 s later: the
    # retry hook reports the wait the client computed from the two headers.
    date = f"Sun, 06 Nov 1994 08:49:37 {zone}"
    refused = MockResponse(429, headers={"Date": date, "X-RateLimit-Reset": "784111837"})
    answers = iter([refused, MockResponse(200, {"success": True})])
    waits: list[RetryScheduled] = []

    class Hooks:
        def on_retry_scheduled(self, details: RetryScheduled) -> None:
            waits.append(details)

    async def main() -> None:
        async with RyzeClient(token="t", instance="i", rate_limit=None, max_retries=1,
                              transport=MockTransport(lambda _r: next(answers)),
                              hooks=Hooks()) as client:
            await client.fake_call(NUMBER)

    run_virtual(main())
    assert [(w.reason, w.delay) for w in waits] == [("rate_limited", 60.0)]


# -- item 14: every error survives pickling ------------------------------------------------------

def _error_classes() -> list[type[BaseException]]:
    exported = (getattr(ryze_async, name) for name in ryze_async.__all__)
    found = [obj for obj in exported
             if inspect.isclass(obj) and issubclass(obj, BaseException)]
    assert len(found) >= 12
    return found


def _sample(cls: type[BaseException]) -> BaseException:
    info = RateLimitInfo(limit=100, remaining=0, reset=123.0)
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, object] = {}
    for name, value in (("status", 503), ("rate_limit", info), ("reset_at", 9.5),
                        ("field", "number"), ("retryable", False), ("attempts", 3),
                        ("from_api", True)):
        if name in params:
            kwargs[name] = value
    return cls("something failed", **kwargs)


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_round_trips_through_pickle(cls: type[BaseException]) -> None:
    original = _sample(cls)
    copy = pickle.loads(pickle.dumps(original))  # noqa: S301 - our own bytes
    assert type(copy) is cls
    assert str(copy) == str(original)
    assert copy.args == original.args
    assert vars(copy) == vars(original)


@pytest.mark.parametrize("body", [b"<html>429</html>", b"y" * (MAX_ANSWER_BYTES + 1)])
async def test_a_429_is_refused_whatever_its_body(body: bytes) -> None:
    # A rate limiter refuses before forwarding: a 429 stays a RateLimitError, oversize or not.
    async with byte_server(canned(429, body)) as server, client_for(server.url) as client:
        with pytest.raises(RateLimitError) as info:
            await client.fake_call(NUMBER)
    assert not isinstance(info.value, OutcomeUnknownError)
