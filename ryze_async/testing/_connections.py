"""TCP connections of the fake server: counting accepts, naming each one, closing idle ones."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import weakref
from collections.abc import Callable

from aiohttp import web
from aiohttp.web_server import Server
from yarl import URL


def is_loopback_ip(host: str) -> bool:
    """True for a loopback IP literal; a host name could resolve anywhere, so it is refused."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConnectionTracker:
    """Counts accepted connections, gives each an id, and knows which are mid-request."""

    def __init__(self) -> None:
        self.accepted = 0
        # Weak keys: a closed transport is never reused, and its id must not keep it alive.
        self._ids: weakref.WeakKeyDictionary[asyncio.BaseTransport, int] = (
            weakref.WeakKeyDictionary()
        )
        self._last_id = 0
        self._in_flight: set[asyncio.BaseTransport] = set()
        # Loop time each connection last finished a request: how long it has been idle.
        self._idle_since: weakref.WeakKeyDictionary[asyncio.BaseTransport, float] = (
            weakref.WeakKeyDictionary()
        )

    def on_accept(self) -> None:
        """Called by `CountingSite` for every accepted connection."""
        self.accepted += 1

    def id_of(self, transport: asyncio.BaseTransport | None) -> int:
        """A stable id per connection (1, 2, ... in order of first request; 0 if gone)."""
        if transport is None:
            return 0
        connection_id = self._ids.get(transport)
        if connection_id is None:
            self._last_id += 1
            connection_id = self._ids[transport] = self._last_id
        return connection_id

    def begin(self, transport: asyncio.BaseTransport | None) -> None:
        """A request is being handled on `transport`."""
        if transport is not None:
            self._in_flight.add(transport)

    def end(self, transport: asyncio.BaseTransport | None) -> None:
        """The request on `transport` was answered (or dropped)."""
        if transport is not None:
            self._in_flight.discard(transport)
            self._idle_since[transport] = asyncio.get_running_loop().time()

    def idle_for(self, transport: asyncio.BaseTransport | None) -> float | None:
        """Seconds `transport` sat idle before its current request; None for a new connection."""
        if transport is None or transport not in self._idle_since:
            return None
        return asyncio.get_running_loop().time() - self._idle_since[transport]

    def close_idle(self, server: Server) -> None:
        """Close idle keep-alive connections now, busy ones after their current response."""
        for connection in server.connections:
            if connection.transport in self._in_flight:
                connection.close()
            else:
                connection.force_close()


#: Connections the kernel completes while the loop is busy (asyncio's default is 100; the kernel
#: caps it at net.core.somaxconn): past it a SYN is dropped and sent again a second later, so a
#: burst of new connections would reach the server's count a second after the client sent it.
BACKLOG = 4096


class CountingSite(web.BaseSite):
    """Like `aiohttp.web.TCPSite`, plus a callback per accepted connection.

    TCPSite hands the runner's protocol factory straight to the event loop, leaving no hook
    to observe accepts; this site wraps that factory. Stopping it closes only the listening
    socket, so the server can refuse new connections and later listen on the same port.
    """

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, on_accept: Callable[[], None],
        *, ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._on_accept = on_accept

    @property
    def name(self) -> str:
        """The site's URL."""
        scheme = "http" if self._ssl_context is None else "https"
        return str(URL.build(scheme=scheme, host=self._host, port=self._port))

    @property
    def port(self) -> int:
        """The bound port once started (the requested one before)."""
        return self._port

    async def start(self) -> None:
        """Listen; SO_REUSEADDR lets a restart bind the same port at once."""
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("call runner.setup() before starting a site")

        def accept() -> asyncio.Protocol:
            self._on_accept()
            return server()

        self._server = await asyncio.get_running_loop().create_server(
            accept, self._host, self._port, reuse_address=True, ssl=self._ssl_context,
            backlog=BACKLOG,
        )
        self._port = self._server.sockets[0].getsockname()[1]
