"""A byte-counting HTTP/1.1 server of the tests' own, independent of the client and FakeRyzeServer.

It counts every TCP connection and every byte received, keeps each request's raw path and body,
and answers every request with one fixed success report. "Nothing was sent" is then provable at
the byte level: no new connection, no new byte.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

ANSWER = b'{"success":true,"message":"Audio call placed","callId":"CALL-1"}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER
)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ByteServer:
    server: asyncio.Server | None = None
    connections: int = 0
    bytes_received: int = 0
    requests: list[Request] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> ByteServer:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        self.bytes_received += len(head)
        lines = head.decode("latin-1").split("\r\n")
        _method, path, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        # The client sends a Content-Length (chunked bodies are not expected from it).
        assert "transfer-encoding" not in headers, headers
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.bytes_received += len(body)
        self.requests.append(Request(path, headers, body))
        writer.write(RESPONSE)
        await writer.drain()
        return True
