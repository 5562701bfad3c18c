"""The only module that speaks aiohttp: one session per client, one POST per ``send``.

Its job beyond sending is to sort every failure into one of two kinds, because that decides
whether a person may be called twice:

- never sent (``ConnectionFailedError``): the TCP connection was never established (refused,
  DNS failure, connect timeout, TLS failure). The server cannot have seen the request.
- outcome unknown (``OutcomeUnknownError``): anything after the connection was made (the server
  hung up, a read or total timeout, a truncated answer). The server may have placed the call.

Stale keep-alive connections: a POST written on a pooled socket that the server has just closed
fails like a request the server dropped, so it would surface as a spurious unknown outcome
(aiohttp retries that case only for idempotent methods). Pooled connections are therefore
discarded after ``keepalive_timeout`` idle seconds (default 1 s, below the idle timeouts of
common servers and proxies, 2 s and up), and ``keepalive_timeout=0`` opens a fresh connection for
every call. Redirects are never followed, so the token never travels to another host.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from ._errors import ConnectionFailedError, OutcomeUnknownError

__all__ = ["AIOHTTP_VERSION", "RawResponse", "Transport"]

AIOHTTP_VERSION = aiohttp.__version__
_log = logging.getLogger("ryze_async")


@dataclass(frozen=True, slots=True)
class RawResponse:
    """What came back, before any interpretation."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport:
    """Owns the aiohttp session, created lazily inside the running loop."""

    def __init__(self, *, timeout: float, connect_timeout: float, keepalive_timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._keepalive_timeout = keepalive_timeout
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_for_running_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None:
            if self._keepalive_timeout > 0:
                connector = aiohttp.TCPConnector(keepalive_timeout=self._keepalive_timeout)
            else:
                connector = aiohttp.TCPConnector(force_close=True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
            )
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(
                "a RyzeClient is bound to the event loop it first sent from; "
                "create one client per event loop"
            )
        return self._session

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> RawResponse:
        """POST ``body`` to ``url`` once; raise ConnectionFailedError or OutcomeUnknownError."""
        session = self._session_for_running_loop()
        target = URL(url, encoded=True)
        where = f"{target.host}:{target.port}"
        try:
            async with session.post(
                target, data=body, headers=headers, allow_redirects=False
            ) as response:
                payload = await response.read()
                return RawResponse(response.status, response.headers, payload)
        except aiohttp.ClientSSLError as exc:
            raise ConnectionFailedError(
                f"TLS handshake with {where} failed ({type(exc).__name__}); nothing was sent",
                retryable=False,
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise ConnectionFailedError(
                f"could not connect to {where} ({exc.os_error.strerror or exc.os_error}); "
                "nothing was sent",
            ) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectionFailedError(
                f"connecting to {where} timed out after {self._timeout.connect} s; "
                "nothing was sent",
            ) from exc
        except TimeoutError as exc:
            raise OutcomeUnknownError(
                f"no complete answer from {where} within {self._timeout.total} s; "
                "the call may have been placed"
            ) from exc
        except aiohttp.ClientPayloadError as exc:
            raise OutcomeUnknownError(
                f"the answer from {where} was cut off; the call may have been placed"
            ) from exc
        except aiohttp.ClientError as exc:
            raise OutcomeUnknownError(
                f"the connection to {where} failed after the request was sent "
                f"({type(exc).__name__}); the call may have been placed"
            ) from exc

    @property
    def closed(self) -> bool:
        return self._session is not None and self._session.closed

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
