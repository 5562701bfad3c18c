"""A loopback HTTP server in its own process, driven over a pipe (shared by the benchmarks).

The server lives in another process so that the benchmark's own CPU and memory figures are the
client's alone. The parent spawns it, reads its URL from the pipe, then sends commands: "stats"
is answered with whatever the server's stats callback returns, anything else stops the server.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import ssl
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Only for annotations: a campaign child imports this module and must not load the server side
    # (its RSS is measured).
    from aiohttp import web

Stop = Callable[[], Awaitable[None]]


def rate_headers() -> dict[str, str]:
    """RyzeAPI's ``X-RateLimit-*`` headers for a quota nobody reaches, as a success carries them."""
    return {"X-RateLimit-Limit": "2147483647", "X-RateLimit-Remaining": "2147483646",
            "X-RateLimit-Reset": str(int(time.time()) + 60)}


async def start_site(app: web.Application,
                     ssl_context: ssl.SSLContext | None = None) -> tuple[str, Stop]:
    """Serve ``app`` on a free port of 127.0.0.1 (https with ``ssl_context``); returns its URL
    and what stops it."""
    from aiohttp import web  # noqa: PLC0415 - see the import above

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    scheme = "http" if ssl_context is None else "https"
    return f"{scheme}://127.0.0.1:{runner.addresses[0][1]}", runner.cleanup


async def answer_commands(conn: Connection, url: str, stats: Callable[[], object],
                          stop: Stop) -> None:
    """In the server process: report ``url``, answer "stats" until told to stop, then ``stop()``."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def on_command() -> None:
        if conn.recv() == "stats":
            conn.send(stats())
        else:
            done.set()

    # A reader on the pipe, not a blocking recv in a thread: the server's loop keeps serving.
    loop.add_reader(conn.fileno(), on_command)
    conn.send(url)
    await done.wait()
    loop.remove_reader(conn.fileno())
    await stop()


class ServerProcess:
    """The server in its own process (spawned: it shares nothing with the parent's state).

    ``target(*args, conn)`` runs in the child; it must end by awaiting ``answer_commands``.
    """

    def __init__(self, target: Callable[..., None], *args: Any, name: str = "server") -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=target, args=(*args, child), daemon=True)
        self._process.start()
        child.close()
        if not self._conn.poll(30):
            raise RuntimeError(f"the {name} did not start")
        self.url: str = self._conn.recv()

    def stats(self) -> Any:
        """What the server's stats callback returned for this request."""
        self._conn.send("stats")
        return self._conn.recv()

    def close(self) -> None:
        self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
