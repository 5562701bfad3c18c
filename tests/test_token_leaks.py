"""Issue 7 item 15: the token is absent, whole or in part, from every error, its whole chain,
its traceback's locals, reprs and messages, whatever the failure."""

from __future__ import annotations

import json
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from ryze_async import CallResult, InvalidRequestError, RyzeClient, RyzeError
from ryze_async.testing import FakeRyzeServer, Fault, run_virtual

from .byte_server import byte_server, canned
from .conftest import ClientFactory

# Quotes and a backslash: repr() escapes them, so a redaction run on a repr misses it.
SECRET = "tok\\en\"q'uote-9f8e7d6c5b4a3210"
NUMBER = "5511999999999"
TESTS = str(Path(__file__).parent)
ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]


def _pieces(token: str) -> list[str]:
    """The token and every 8-character piece of it, raw and as repr()/JSON escape them."""
    forms = {token, repr(token)[1:-1], json.dumps(token)[1:-1]}
    return sorted({form[i:i + 8] for form in forms for i in range(len(form) - 7)})


PIECES = _pieces(SECRET)


def _reprs(value: object, depth: int, seen: set[int]) -> Iterator[str]:
    """repr() of ``value`` and, a few levels deep, of what it holds (dicts, sequences, __dict__)."""
    if id(value) in seen:
        return
    seen.add(id(value))
    try:
        yield repr(value)
    except Exception as exc:
        yield f"<repr failed: {type(exc).__name__}>"
    if depth == 0 or isinstance(value, str | bytes | int | float):
        return
    children: list[object] = []
    if isinstance(value, dict):
        children = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set | frozenset):
        children = list(value)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        children = list(vars(value).values())
    for child in children[:200]:
        yield from _reprs(child, depth - 1, seen)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]


def _frames(tb: TracebackType | None) -> Iterator[Any]:
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def everything_said(exc: BaseException) -> list[str]:
    said = ["".join(traceback.format_exception(exc))]
    # What an error tracker that captures locals records (the test's own frames excluded).
    todo: list[traceback.TracebackException | None] = [
        traceback.TracebackException.from_exception(exc, capture_locals=True)
    ]
    while todo:
        captured = todo.pop()
        if captured is None:
            continue
        said += [str(captured)]
        said += [repr(frame.locals) for frame in captured.stack
                 if not frame.filename.startswith(TESTS)]
        todo += [captured.__cause__, captured.__context__]
    for link in _chain(exc):
        said += [repr(link), str(link), *_reprs(vars(link), 3, set())]
        for frame in _frames(link.__traceback__):
            if not frame.f_code.co_filename.startswith(TESTS):  # the test's own frames hold it
                said += list(_reprs(frame.f_locals, 4, set()))
    return said


def assert_no_token(texts: list[str]) -> None:
    for text in texts:
        leaked = [piece for piece in PIECES if piece in text]
        assert not leaked, f"token piece {leaked[0]!r} in {text[:300]!r}"


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(token=SECRET)


@pytest.mark.parametrize("fault", [Fault.SERVER_ERROR, Fault.HTML_502, Fault.HANG,
                                   Fault.DROP_AFTER_READ, Fault.TRUNCATED, Fault.REDIRECT])
def test_no_token_in_any_failure(fault: Fault) -> None:
    # On the virtual clock: the hang's timeout costs no real time, and no other fault can run
    # into it however loaded the machine is.
    async def main() -> None:
        async with FakeRyzeServer(token=SECRET) as server, RyzeClient(
            SECRET, "my-instance", base_url=server.url, rate_limit=None, timeout=0.5,
            connect_timeout=0.2
        ) as client:
            server.fail_next(fault)
            with pytest.raises(RyzeError) as info:
                await client.fake_call(NUMBER)
        assert_no_token(everything_said(info.value))

    run_virtual(main(), start=1000.0)


async def test_no_token_when_the_connection_is_refused_after_retries(
    server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    await server.refuse_connections()
    with pytest.raises(RyzeError) as info:
        await make_client(server, token=SECRET, max_retries=1).fake_call(NUMBER)
    assert_no_token(everything_said(info.value))


@pytest.mark.parametrize("answer", [
    b"GARBAGE\r\n\r\n",  # aiohttp's ClientResponseError carries the request's headers
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
])
async def test_no_token_from_aiohttps_own_errors(answer: bytes) -> None:
    async with byte_server(answer) as bytes_server, RyzeClient(
        SECRET, "my-instance", base_url=bytes_server.url, rate_limit=None, max_retries=0
    ) as client:
        with pytest.raises(RyzeError) as info:
            await client.fake_call(NUMBER)
    assert_no_token(everything_said(info.value))


@pytest.mark.parametrize("settings", [
    {"rate_limit": 0}, {"timeout": -1}, {"base_url": "ftp://x"}, {"instance": " x"},
])
def test_no_token_when_the_constructor_refuses_a_setting(settings: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        RyzeClient(SECRET, **settings)
    assert_no_token(everything_said(info.value))


def test_no_token_when_the_token_itself_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as info:
        RyzeClient(SECRET + "\n")
    assert_no_token(everything_said(info.value))


def test_repr_of_a_half_built_client_does_not_raise() -> None:
    client = RyzeClient.__new__(RyzeClient)
    with pytest.raises(InvalidRequestError):
        client.__init__(SECRET, rate_limit=0)  # type: ignore[misc]
    assert "RyzeClient" in repr(client)
    assert_no_token([repr(client)])


@pytest.mark.parametrize("offset", range(180, 215, 3))
async def test_an_echoed_token_is_redacted_before_the_excerpt_is_cut(offset: int) -> None:
    # A proxy page that echoes the request's headers, the token straddling the excerpt's end.
    page = ("<" + "x" * offset + SECRET + "y" * 300).encode()
    async with byte_server(canned(502, page)) as bytes_server, RyzeClient(
        SECRET, "my-instance", base_url=bytes_server.url, rate_limit=None
    ) as client:
        with pytest.raises(RyzeError) as info:
            await client.fake_call(NUMBER)
    assert_no_token([str(info.value), repr(info.value)])  # the message (the journal's error)
    assert_no_token(everything_said(info.value))


async def test_an_echoed_token_in_an_envelope_and_a_success_is_redacted() -> None:
    for body, status in (
        ({"success": False, "error": {"message": f"bad token {SECRET}"}}, 401),
        ({"success": True, "message": f"placed with {SECRET}", "callId": SECRET}, 200),
    ):
        answer = canned(status, json.dumps(body).encode(), "application/json")
        async with byte_server(answer) as bytes_server, RyzeClient(
            SECRET, "my-instance", base_url=bytes_server.url, rate_limit=None
        ) as client:
            try:
                result: CallResult | RyzeError = await client.fake_call(NUMBER)
            except RyzeError as exc:
                result = exc
        assert_no_token([repr(result), str(result)])
        if isinstance(result, RyzeError):
            assert_no_token(everything_said(result))


@pytest.mark.parametrize("status", [401, 429, 500, 502])
async def test_an_echoed_token_stays_out_of_an_errors_evidence(status: int) -> None:
    # Issue 11: errors keep headers and a body excerpt; a server echoing the token in both
    # (long and short header values) must leave no piece of it in any attribute.
    body = json.dumps({"success": False, "error": {"message": f"no {SECRET}"}}).encode()
    if status == 502:
        body = b"<html>" + SECRET.encode() * 3 + b"</html>"
    echo = (f"X-RateLimit-Limit: {SECRET}\r\nX-RateLimit-Remaining: 0 {SECRET}\r\n"
            f"Retry-After: {'r' * 95}{SECRET}\r\nDate: {SECRET}\r\n")
    answer = canned(status, body, "application/json").replace(
        b"Connection: close\r\n", b"Connection: close\r\n" + echo.encode())
    async with byte_server(answer) as bytes_server, RyzeClient(
        SECRET, "my-instance", base_url=bytes_server.url, rate_limit=None, max_retries=0
    ) as client:
        with pytest.raises(RyzeError) as info:
            await client.fake_call(NUMBER)
    error = info.value
    assert error.headers  # type: ignore[attr-defined]  # kept, redacted
    assert error.body_excerpt  # type: ignore[attr-defined]
    assert_no_token([repr(error.headers), str(error.body_excerpt)])  # type: ignore[attr-defined]
    assert_no_token(everything_said(error))
