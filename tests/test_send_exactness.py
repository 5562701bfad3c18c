"""#7.6: an answer is only ever the answer to a request the server really received.

A byte-level server answers each request, then writes a second, unsolicited, complete 200
success on the now idle connection. A client that pools connections reads that stray answer as
the next call's result: the call "succeeds" with a call id while the server never received it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from ryze_async import ConnectionFailedError, OutcomeUnknownError, RyzeClient

NUMBER = "5511999999999"


def _answer(call_id: str) -> bytes:
    body = json.dumps({"success": True, "message": "Call placed successfully",
                       "callId": call_id, "number": NUMBER, "duration": 8}).encode()
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + body


class StrayAnswerServer:
    """Answers every request with callId ``real-N``, then writes ``stray-N`` unprompted."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.received.append(body)
                n = len(self.received)
                writer.write(_answer(f"real-{n}"))
                await writer.drain()
                await asyncio.sleep(0.02)  # the connection is idle in the client's pool now
                writer.write(_answer(f"stray-{n}"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def stray_server() -> AsyncIterator[tuple[StrayAnswerServer, str]]:
    server = StrayAnswerServer()
    url = await server.start()
    yield server, url
    await server.close()


async def _second_call(client: RyzeClient, server: StrayAnswerServer) -> None:
    first = await client.fake_call(NUMBER)
    assert first.call_id == "real-1"
    await asyncio.sleep(0.1)  # the stray answer has arrived on the idle connection
    try:
        second = await client.fake_call(NUMBER)
    except (ConnectionFailedError, OutcomeUnknownError):
        return  # a failure is honest; only a success nobody received is not
    assert len(server.received) == 2, "a call reported placed that the server never received"
    assert second.call_id == "real-2"


async def test_a_stray_answer_is_never_a_calls_result(
    stray_server: tuple[StrayAnswerServer, str],
) -> None:
    server, url = stray_server
    async with RyzeClient(token="t", instance="i", base_url=url, rate_limit=None) as client:
        await _second_call(client, server)
    assert len(server.received) == 2


async def test_every_call_gets_a_fresh_connection_by_default(
    stray_server: tuple[StrayAnswerServer, str],
) -> None:
    _, url = stray_server
    async with RyzeClient(token="t", instance="i", base_url=url, rate_limit=None) as client:
        results = [await client.fake_call(NUMBER) for _ in range(3)]
    assert [r.call_id for r in results] == ["real-1", "real-2", "real-3"]
