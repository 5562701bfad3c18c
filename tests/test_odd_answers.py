"""Answers RyzeAPI should never send, from a bare server on loopback: a placed call stays placed
or becomes an unknown outcome; it never turns into an error that reads as "not placed"."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ryze_async import OutcomeUnknownError, RyzeClient
from ryze_async._models import rate_limit_fields

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


def test_non_finite_header_values_are_ignored() -> None:
    fields = rate_limit_fields({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "nan",
                                "X-RateLimit-Reset": "inf"})
    assert fields == {"limit": 100, "remaining": None, "reset": None}


async def test_a_fault_while_reading_an_answer_is_an_unknown_outcome(
    serve: Callable[[web.Response], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, hits = await serve(web.json_response(SUCCESS))  # type: ignore[misc]

    def broken(headers: object) -> None:
        raise OverflowError("a bug in reading headers")

    monkeypatch.setattr("ryze_async._client.rate_limit_fields", broken)
    async with RyzeClient(token="t", instance="i", base_url=url, rate_limit=None) as client:
        with pytest.raises(OutcomeUnknownError, match="could not be read"):
            await client.fake_call("5511999999999")
    assert len(hits) == 1
