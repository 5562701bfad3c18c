"""The aiohttp transport, the only client-side module that imports aiohttp: one POST per ``send``.

Its job beyond sending is to sort every failure into one of two kinds, because that decides
whether a person may be called twice:

- never sent (``ConnectionFailedError``): the TCP connection was never established (refused,
  DNS failure, connect timeout, TLS failure). The server cannot have seen the request.
- outcome unknown (``OutcomeUnknownError``): anything after the connection was made (the server
  hung up, a read or total timeout, a truncated answer, an answer over ``MAX_ANSWER_BYTES``).
  The server may have placed the call.

aiohttp's own exceptions are never chained to ours: they hold the request's headers (the token)
and their tracebacks the frames that built them. The token travels as a ``Secret`` and is
revealed only inside ``_exchange``, a frame that no error we raise has in its traceback.

Connection policy: by default every call gets a fresh TCP (and TLS) connection, closed after its
answer (``keepalive_timeout=0``). A pooled connection can carry bytes nobody asked for: a
response the server (or a proxy) wrote on it while it sat idle is read as the *next* call's
answer, so a call would report a call id while the server never received it. A pooled socket
the server has just closed also makes the next POST fail like a request the server dropped (a
spurious unknown outcome; aiohttp retries that only for idempotent methods). At the quota's 100
calls a minute a handshake per call costs nothing that matters (see benchmarks/README.md).
``keepalive_timeout > 0`` re-enables pooling for connections idle less than that many seconds,
with both risks above. Redirects are never followed, so the token never travels to another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload
from yarl import URL

from .._config import Secret
from .._exceptions import ClientClosedError, ConnectionFailedError, OutcomeUnknownError
from . import LEAVING, RawResponse

if TYPE_CHECKING:
    from .._tls import Tls

__all__ = ["MAX_ANSWER_BYTES", "AiohttpTransport"]

#: Bodies given in parts are joined below this size; above it they are sent part by part.
JOIN_BELOW = 64 * 1024
#: The most of an answer's body that is read. RyzeAPI's answers are a few hundred bytes; a
#: longer one (a misbehaving proxy, a hostile server: a 50 MB 200 was once read whole) is not
#: read further and its connection is closed. An oversize answer is an ``OutcomeUnknownError``
#: whatever its status (it is not RyzeAPI's envelope, so nothing proves "not placed"), except a
#: 429, which refused the call whatever its body says.
MAX_ANSWER_BYTES = 64 * 1024
#: A TLS connection closed after its answer shuts down in the background; on the Pythons whose
#: asyncio can leave it open (aiohttp knows which), closing the session aborts those that are
#: left, so a loop that ends right after (the CLI's) does not leave their sockets behind.
#: Not on 3.11.1 to 3.11.3 (Debian 12's 3.11.2): there ``abort()`` of a transport already
#: closed raises AttributeError (CPython gh-104485, fixed in 3.11.4), so closing the client
#: would fail; a TLS transport left open there waits for the garbage collector instead.
_CLEANUP_CLOSED: bool = (getattr(aiohttp.connector, "NEEDS_CLEANUP_CLOSED", False)
                         and not (3, 11, 1) <= sys.version_info[:3] < (3, 11, 4))


#: The most requests on fresh connections the clients of one event loop start in one turn of
#: the loop (issue 18). Starting one (a socket, a connect, the request built) and what follows
#: in the next turns (its write, its answer) cost the loop about half a millisecond each; fifty
#: clients at a window's start asked for thousands at once, and turns of hundreds of them took
#: 100-250 ms, every task of the loop waiting that long. A few per turn, in order, keep a turn
#: short at the same throughput: a turn is short when the loop is idle, so this caps CPU per
#: turn, not requests in flight, and a slow network (a TLS handshake per call) slows nothing.
STARTS_PER_TURN = 4
#: Requests on kept-alive connections that cost a turn what one on a fresh connection does (no
#: socket, no connect, no handshake: a pooled call's CPU is under half of a fresh one's over
#: plain HTTP). Measured, not guessed (benchmarks/README.md, section 10): at 2, fifty pooled
#: clients' turns cost what fresh ones' do (loop-lag p99 8-9 ms both), and 20 concurrent
#: pooled calls of one client rarely wait a turn; at 4 the p99 doubled.
POOLED_PER_FRESH = 2
_FRESH = POOLED_PER_FRESH  # what a start on a fresh connection costs, in pooled starts
_BUDGET = STARTS_PER_TURN * _FRESH


class _Starts:
    """One event loop's request starts, a turn's budget of `STARTS_PER_TURN` fresh ones (a
    pooled one costs a `POOLED_PER_FRESH`-th); beyond it, the next turns, first come, first
    served. Holds no reference to its loop (it is the value of a weak mapping keyed by the
    loop): the running loop is asked for each time."""

    __slots__ = ("_queue", "_spent", "_ticking")

    def __init__(self) -> None:
        self._spent = 0  # of the budget, since the last tick
        self._ticking = False  # a tick is queued: it opens the next turn's budget
        self._queue: deque[tuple[asyncio.Future[None], int]] = deque()

    def take(self, cost: int) -> bool:
        """Whether a request of ``cost`` may start in this turn (nobody queued, budget left)."""
        spent = self._spent + cost
        if self._queue or spent > _BUDGET:
            return False
        self._spent = spent
        if spent > _BUDGET - _FRESH:
            # Nearly spent: the next turn opens a new budget. Until then no tick (a loop turn
            # of its own for every request of a lone caller): starts of earlier turns count
            # against this one, which only ever starts fewer.
            self._tick_next_turn()
        return True

    async def wait(self, cost: int) -> None:
        """Wait for a turn with room for ``cost``, in order."""
        turn = asyncio.get_running_loop().create_future()
        entry = (turn, cost)
        self._queue.append(entry)
        self._tick_next_turn()
        try:
            await turn
        except asyncio.CancelledError:
            if not turn.done() or turn.cancelled():  # still queued: a closing loop's too
                with contextlib.suppress(ValueError):
                    self._queue.remove(entry)
            raise

    def _tick_next_turn(self) -> None:
        if not self._ticking:
            self._ticking = True
            asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        # A new turn: a fresh budget, the queued first. Each one let go starts in the next turn.
        self._ticking = False
        self._spent = 0
        queue = self._queue
        while queue and self._spent + queue[0][1] <= _BUDGET:
            turn, cost = queue.popleft()
            if not turn.done():  # not cancelled while it waited
                turn.set_result(None)
                self._spent += cost
        if self._spent > _BUDGET - _FRESH:
            self._tick_next_turn()


_starts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Starts] = (
    weakref.WeakKeyDictionary())


def _start_for(loop: asyncio.AbstractEventLoop) -> _Starts:
    starts = _starts.get(loop)
    if starts is None:
        starts = _starts[loop] = _Starts()
    return starts


class PartsPayload(Payload):
    """A body sent as its parts, in order, with an exact Content-Length.

    A call's body is a few bytes that change per call (the number) around a media member of up to
    ~22 MB that never changes: sent this way the media is never copied into a per-call buffer.
    """

    _autoclose = True  # immutable bytes in memory: nothing to close, reusable

    def __init__(self, parts: Sequence[bytes], **kwargs: Any) -> None:
        super().__init__(tuple(parts), content_type="application/json", **kwargs)
        self._size = sum(len(part) for part in self._value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self._value).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        for part in self._value:
            await writer.write(part)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        if content_length is None:
            await self.write(writer)
            return
        for part in self._value:
            if content_length <= 0:
                return
            await writer.write(part[:content_length] if len(part) > content_length else part)
            content_length -= len(part)


class _Request(aiohttp.ClientRequest):
    """A request that says when it leaves: ``write_bytes`` writes the status line and headers
    (aiohttp holds them back to send them with the body) and the body, once the connection is
    made. Before Python 3.12 it runs as a task of its own, a loop turn after the connection:
    at a busy loop's worst, a turn is tens of milliseconds. A hook, not a ``TraceConfig``
    (which costs every request a dozen signals and fires before the bytes are written)."""

    async def write_bytes(self, *args: Any, **kwargs: Any) -> None:
        leaving = LEAVING.get()
        if leaving is not None:
            leaving()
        await super().write_bytes(*args, **kwargs)


class AiohttpTransport:
    """Owns the aiohttp session, created lazily inside the running loop."""

    #: It calls LEAVING before a request's first byte (`_Request.write_bytes`): a request
    #: cancelled before then sent nothing (its connection is closed and its writer cancelled
    #: by aiohttp before it ran).
    tells_leaving = True

    def __init__(
        self, *, timeout: float, connect_timeout: float, keepalive_timeout: float,
        max_answer: int = MAX_ANSWER_BYTES, tls: Tls = None, https: bool = True,
    ) -> None:
        self._max_answer = max_answer
        # aiohttp's ssl=True is its default context: the system's roots (issue 18).
        self._ssl: Any = True if tls is None else tls
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._keepalive_timeout = keepalive_timeout
        # Plain HTTP has no TLS transport to abort: the cleanup's 2 s timer would only cost
        # loop turns for the session's whole life.
        self._cleanup_closed = _CLEANUP_CLOSED and https
        self._session: aiohttp.ClientSession | None = None
        self._closed = False  # once closed, never a new session: nothing is sent after aclose()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starts: _Starts | None = None  # the request pacer of ``_loop``
        self._start_cost = 1 if keepalive_timeout > 0 else _FRESH
        self._target: tuple[str, URL] | None = None  # the last URL sent to, parsed

    def _session_for_running_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None:
            if loop is not self._loop:
                raise RuntimeError(
                    "a RyzeClient is bound to the event loop it first sent from; "
                    "create one client per event loop"
                )
            return session
        if self._closed:
            raise ClientClosedError("this RyzeClient is closed; nothing was sent")
        if self._keepalive_timeout > 0:
            connector = aiohttp.TCPConnector(
                keepalive_timeout=self._keepalive_timeout, ssl=self._ssl,
                enable_cleanup_closed=self._cleanup_closed)
        else:
            connector = aiohttp.TCPConnector(force_close=True, ssl=self._ssl,
                                             enable_cleanup_closed=self._cleanup_closed)
        session = self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
            request_class=_Request,
        )
        self._loop = loop
        self._starts = _start_for(loop)
        return session

    async def send(
        self, url: str, headers: Mapping[str, str | Secret], body: bytes | Sequence[bytes]
    ) -> RawResponse:
        """POST ``body`` (bytes, or parts sent in order) to ``url`` once.

        Raises ConnectionFailedError or OutcomeUnknownError.
        """
        loop = asyncio.get_running_loop()
        # The pacer of the session's loop is kept here: no weak-mapping look-up per call.
        starts = self._starts if loop is self._loop else None
        if starts is None:
            starts = _start_for(loop)
        if not starts.take(self._start_cost):
            # Nothing is sent before: a cancel here leaves nothing behind.
            await starts.wait(self._start_cost)
        session = self._session if loop is self._loop else None
        if session is None:
            session = self._session_for_running_loop()
        data = _payload(body)
        # The client keeps its URLs (encoded: already quoted); the last one's parse is kept
        # too (a client calls one instance's URL call after call).
        parsed = self._target
        if parsed is None or url != parsed[0]:
            parsed = self._target = (url, URL(url, encoded=True))
        target = parsed[1]
        failure: ConnectionFailedError | OutcomeUnknownError
        try:
            return await self._exchange(session, target, data, headers)
        except _OversizeAnswerError as exc:
            failure = OutcomeUnknownError(
                f"the answer from {_where(target)} is larger than {self._max_answer} bytes "
                "(RyzeAPI's are tiny) and was not read; the call may have been placed",
                status=exc.status,
            )
        except _CutOffError as exc:
            failure = OutcomeUnknownError(
                f"the answer from {_where(target)} (HTTP {exc.status}) was cut off; the call "
                "may have been placed", status=exc.status,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = self._failure(exc, _where(target))
        # Raised here, outside the handler, so aiohttp's exception is neither __cause__ nor
        # __context__: it holds the request's headers (the token) in its request_info, and
        # its traceback the frames that held them.
        raise failure

    def _failure(
        self, exc: Exception, where: str
    ) -> ConnectionFailedError | OutcomeUnknownError:
        """Our error for a failed exchange: only its type, OS error text or OpenSSL's
        verification reason are kept."""
        tls = _tls_failure(exc, where)
        if tls is not None:
            return tls
        if isinstance(exc, aiohttp.ClientConnectorError):
            return ConnectionFailedError(
                f"could not connect to {where} ({_os_error(exc.os_error)}); nothing was sent"
            )
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return ConnectionFailedError(
                f"connecting to {where} timed out after {self._timeout.connect} s; "
                "nothing was sent"
            )
        if isinstance(exc, TimeoutError):
            return OutcomeUnknownError(
                f"no complete answer from {where} within {self._timeout.total} s; "
                "the call may have been placed"
            )
        if isinstance(exc, aiohttp.ClientPayloadError):
            return OutcomeUnknownError(
                f"the answer from {where} was cut off; the call may have been placed"
            )
        return OutcomeUnknownError(
            f"the connection to {where} failed after the request was sent "
            f"({type(exc).__name__}); the call may have been placed"
        )

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        target: URL,
        data: bytes | PartsPayload,
        headers: Mapping[str, str | Secret],
    ) -> RawResponse:
        # The only frame that holds the revealed token; it never appears in the traceback of
        # an error send() raises (see there).
        wire = {name: value.reveal() if isinstance(value, Secret) else value
                for name, value in headers.items()}
        async with session.post(
            target, data=data, headers=wire, allow_redirects=False
        ) as response:
            try:
                payload = await _read_capped(response, self._max_answer)
            except aiohttp.ClientPayloadError:
                raise _CutOffError(response.status) from None  # the status line came whole
            if payload is None:
                response.close()  # read no further: the rest is dropped with the connection
                if response.status != 429:
                    raise _OversizeAnswerError(response.status)
                payload = b""  # a 429 refused the call whatever its body; its headers matter
            return RawResponse(response.status, response.headers, payload)

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


class _OversizeAnswerError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _CutOffError(Exception):
    """The body ended before its announced length, after a whole status line."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The answer's body, or None as soon as it proves longer than ``cap`` bytes."""
    length = response.content_length
    if length is not None and length > cap:
        return None
    content = response.content
    # read(n) returns what is buffered, up to n, and b"" at the end of the body; the length is
    # checked on the decoded bytes, so a compressed bomb is cut off too.
    first = await content.read(cap + 1)
    if len(first) > cap:
        return None
    if not first or (content.at_eof() and content.exception() is None):
        # A small answer comes whole in one read: the body's end is already known, and no
        # error is pending that a further read would raise.
        return first
    chunks = [first]
    size = len(first)
    while True:
        chunk = await content.read(cap + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            return None


def _payload(body: bytes | Sequence[bytes]) -> bytes | PartsPayload:
    if isinstance(body, bytes):
        return body
    if sum(map(len, body)) < JOIN_BELOW:
        return b"".join(body)  # one small write beats the payload machinery
    return PartsPayload(body)  # a fresh one per attempt: aiohttp owns it while sending


def _tls_failure(exc: Exception, where: str) -> ConnectionFailedError | None:
    """A failed handshake: nothing was sent, and trying again fails again (not retryable)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return ConnectionFailedError(
            f"TLS: the certificate of {where} failed verification ({_why(exc)}); nothing "
            "was sent (a private CA: give it with ssl= or --ca-file)", retryable=False,
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return ConnectionFailedError(
            f"TLS handshake with {where} failed ({type(exc).__name__}); nothing was sent",
            retryable=False,
        )
    return None


def _why(exc: aiohttp.ClientConnectorCertificateError) -> str:
    """OpenSSL's reason (e.g. "unable to get local issuer certificate"): about the
    certificate, never the request."""
    reason = getattr(exc.certificate_error, "verify_message", None)
    return reason if isinstance(reason, str) and reason else type(exc.certificate_error).__name__


def _os_error(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _where(target: URL) -> str:
    return f"{target.host}:{target.port}"
