"""Answers RyzeAPI should never send, from a bare server on loopback: a placed call stays placed
or becomes an unknown outcome; it never turns into an error that reads as "not placed"."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ryze_async import OutcomeUnknownError, RawResponse, RyzeClient
from ryze_async.testing import MockResponse, MockTransport

SUCCESS = {"success": True, "message": "Call placed successfully", "callId": "ABC",
           "number": "5511999999999", "duration": 8}


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Response], object]]:
    servers: list[TestServer] = []
    hits: list[int] = []

    async def start(response: web.Response) -> tuple[str, list[int]]:
        async def handler(request: web.Request) -> web.Response:
            await request.read()
            hits.append(1)
            return response

        app = web.Application()
        app.router.add_post("/api/call/fake/{instance}", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/"), hits

    yield start
    for server in servers:
        await server.close()


@pytest.mark.parametrize("garbage", ["inf", "nan", "1e400", "-inf", "ten", ""])
async def test_garbage_rate_limit_headers_do_not_hide_a_placed_call(
    serve: Callable[[web.Response], object], garbage: str
) -> None:
    headers = {"X-RateLimit-Limit": garbage, "X-RateLimit-Remaining": garbage,
               "X-RateLimit-Reset": garbage}
    url, hits = await serve(web.json_response(SUCCESS, headers=headers))  # type: ignore[misc]
    async with RyzeClient(token="t", instance="i", base_url=url, rate_limit=100) as client:
        result = await client.fake_call("5511999999999")
    assert result.call_id == "ABC"
    assert result.rate_limit is None
    assert len(hits) == 1


async def test_non_finite_header_values_are_ignored() -> None:
    headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "nan",
               "X-RateLimit-Reset": "inf"}
    transport = MockTransport(lambda _r: MockResponse(200, SUCCESS, headers=headers))
    async with RyzeClient(token="t", instance="i", rate_limit=None, transport=transport) as client:
        result = await client.fake_call("5511999999999")
    assert result.rate_limit is not None
    assert result.rate_limit.model_dump() == {"limit": 100, "remaining": None, "reset": None}


async def test_a_fault_while_reading_an_answer_is_an_unknown_outcome() -> None:
    # Headers that fail to read (a bug anywhere in reading an answer) arrive through a
    # transport of the test's own: the request reached the server, so the outcome is unknown.
    class BrokenHeaders(dict[str, str]):
        def get(self, key: str, default: object = None) -> str:  # type: ignore[override]
            raise OverflowError("a bug in reading headers")

    hits: list[object] = []

    class Transport:
        async def send(self, url: str, headers: object, body: object) -> RawResponse:
            hits.append(body)
            return RawResponse(200, BrokenHeaders(), json.dumps(SUCCESS).encode())

        async def aclose(self) -> None:
            pass

    async with RyzeClient(token="t", instance="i", rate_limit=None,
                          transport=Transport()) as client:
        with pytest.raises(OutcomeUnknownError, match="could not be read"):
            await client.fake_call("5511999999999")
    assert len(hits) == 1
