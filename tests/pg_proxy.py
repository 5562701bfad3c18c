"""A byte-level proxy between asyncpg and PostgreSQL, for tests that put a fault at an exact point:
it holds the server's answer to the k-th request from then on (``arm``), or freezes the
connections open now in both directions without closing them (``freeze``: a stalled network
path, a frozen pooler), while new connections go through."""

from __future__ import annotations

import asyncio
import struct

_UNTYPED = {80877103, 80877104}  # SSLRequest, GSSENCRequest: the startup message follows


class PgProxy:
    """Forwards every connection to PostgreSQL; once armed, counts the client's requests (a
    simple query or an extended-protocol Sync) and holds the server's bytes from the k-th on,
    until released."""

    def __init__(self, dsn: str) -> None:
        rest = dsn.split("@", 1)[1]
        hostport, self._db = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self._target = (host, int(port))
        self._user = dsn.split("://", 1)[1].split("@", 1)[0]
        self._server: asyncio.Server | None = None
        self._armed: int | None = None
        self.held = asyncio.Event()
        self._release = asyncio.Event()
        self._release.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._open: dict[asyncio.Task[None], tuple[asyncio.Task[None], asyncio.StreamWriter,
                                                    asyncio.StreamWriter]] = {}
        self._frozen: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"postgresql://{self._user}@127.0.0.1:{port}/{self._db}"

    def arm(self, k: int) -> None:
        """Hold the server's answers once the client has sent ``k`` more requests."""
        self._armed = k
        self.held.clear()

    def release(self) -> None:
        self._armed = None
        self._release.set()

    def freeze(self) -> int:
        """Stop forwarding on every connection open now, both ways, and keep them open (no FIN,
        no RST: the client sees a silent peer); new connections go through. How many."""
        frozen = 0
        for up, (down, cwriter, swriter) in list(self._open.items()):
            self._frozen += [cwriter, swriter]
            up.cancel()
            down.cancel()
            frozen += 1
        return frozen

    def refuse(self) -> None:
        """Accept no new connection (those open stay as they are)."""
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        self.release()
        for w in self._frozen:
            w.close()
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        sreader, swriter = await asyncio.open_connection(*self._target)
        up = asyncio.create_task(self._client_to_server(creader, swriter))
        down = asyncio.create_task(self._server_to_client(sreader, cwriter))
        self._tasks |= {up, down}
        self._open[up] = (down, cwriter, swriter)
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        del self._open[up]
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        if cwriter not in self._frozen:
            for w in (cwriter, swriter):
                w.close()

    async def _client_to_server(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        typed = False
        while True:
            if not typed:
                head = await r.readexactly(8)
                (length, code) = struct.unpack("!ii", head)
                body = await r.readexactly(length - 8)
                typed = code not in _UNTYPED
                w.write(head + body)
                await w.drain()
                continue
            head = await r.readexactly(5)
            body = await r.readexactly(struct.unpack("!i", head[1:])[0] - 4)
            w.write(head + body)
            await w.drain()
            if head[:1] in (b"Q", b"S") and self._armed is not None:
                self._armed -= 1
                if self._armed == 0:
                    self._release.clear()
                    self.held.set()

    async def _server_to_client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            await self._release.wait()
            w.write(data)
            await w.drain()
