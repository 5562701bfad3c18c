"""The fake server takes a burst of new connections the way a real service does.

asyncio listens with a backlog of 100 by default: connections beyond it that arrive while the
loop is busy have their SYN dropped, and the client's kernel sends it again a second later.
Fifty clients on one loop open hundreds of connections at a window's start
(benchmarks/many_clients.py): each dropped SYN was a request the server counted a second after
the client let it go, a window over the limit that the client did not cause.
"""

from __future__ import annotations

import select
import socket

from ryze_async.testing import FakeRyzeServer

BURST = 300


async def test_a_burst_of_connections_completes_while_the_loop_is_busy() -> None:
    async with FakeRyzeServer() as server:
        host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1].split("/")[0])
        sockets = [socket.socket() for _ in range(BURST)]
        try:
            for sock in sockets:  # the server's loop (this one) does not run meanwhile
                sock.setblocking(False)
                sock.connect_ex((host, port))
            # The kernel completes a handshake without the loop, as long as the accept queue
            # has room; a bounded wait, far above loopback's microseconds.
            _, done, _ = select.select([], sockets, [], 0.5)
            connected = [s for s in done if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0]
            assert len(connected) == BURST
        finally:
            for sock in sockets:
                sock.close()
