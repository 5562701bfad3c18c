"""`FakeRyzeServer`: a real aiohttp.web server on loopback that behaves like RyzeAPI's call API:
its lifecycle and control, and how it answers one request (recording it, the token check, a
queued fault played, the rate limit, the instance, the body)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from email.utils import formatdate
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self

from aiohttp import hdrs, web
from yarl import URL

from ._connections import ConnectionTracker, CountingSite, is_loopback_ip
from ._faults import (
    Fault,
    FaultQueue,
    Unanswered,
    drop_connection,
    rate_limited,
    simple_fault_response,
)
from ._faults import truncated as send_truncated
from ._rate_window import RateLimiter, WindowKind
from ._records import HeaderDict, RecordedRequest, RequestLog, Route
from ._routing import classify, outcome_response, token_of
from ._validation import CallRoute, ParsedBody, call_outcome, error, parse_body

UNLIMITED: Final = 2**31 - 1
MAX_BODY_BYTES: Final = 64 * 2**20  # base64 of the client's 16 MiB media cap, with room
_SHUTDOWN_TIMEOUT: Final = 5.0  # only reached if a handler ignores the stop signal
NOT_CONNECTED: Final = "Instance is not connected to WhatsApp"


class FakeRyzeServer:
    """A fake RyzeAPI for tests: routes, auth, per-token rate limits, faults and recording.

    ``rate_limit=None`` disables refusals but keeps the ``X-RateLimit-*`` headers, with
    ``X-RateLimit-Limit`` = `UNLIMITED` (2**31 - 1), so every response has the real shape.
    The `clock` (Unix seconds) drives the windows, ``X-RateLimit-Reset``, the ``Date``
    header and `RecordedRequest.received_at`; inject one to move time without sleeping.
    Call-route requests that pass the token check consume the next fault *before* the rate
    limit, so faulted requests never count. Every other call-route request that passes the
    token check is counted, whatever its answer, except a 429.
    """

    UNLIMITED: Final = UNLIMITED

    def __init__(
        self,
        *,
        token: str = "test-token",  # noqa: S107 - the well-known token of a fake server
        tokens: Iterable[str] | None = None,
        instances: Iterable[str] = ("my-instance",),
        rate_limit: int | None = 100,
        rate_period: float = 60.0,
        window: WindowKind = "fixed",
        window_phase: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        keepalive_timeout: float = 75.0,
        response_delay: float = 0.0,
        stale_after: float | None = None,
        on_answered: Callable[[RecordedRequest], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Configure; nothing listens until start().

        Args:
            token: the accepted token; `tokens` adds more. Each token has its own bucket.
            instances: instance names that exist (all connected).
            rate_limit: requests per `rate_period` per token; None never refuses.
            window: ``"fixed"`` windows starting at ``window_phase + k * rate_period``, or a
                ``"sliding"`` log over the last `rate_period` seconds.
            host: a loopback address to listen on.
            port: the port; 0 picks a free port at the first start().
            clock: the server's wall clock (Unix seconds).
            keepalive_timeout: seconds an idle keep-alive connection is kept open.
            response_delay: seconds every request waits before it is answered.
            stale_after: emulate the stale keep-alive race: a request arriving on a reused
                connection that sat idle at least this long is dropped unanswered, as if the
                server's idle timeout had closed the connection while the request was on the
                wire. None (the default) never does.
            on_answered: called with each request's record once it is answered (``status``
                set; None when it was dropped unanswered), before the answer is sent.
            ssl_context: serve HTTPS with this server-side context (its certificate and key
                loaded); `url` then starts with ``https://``. None: plain HTTP.
        """
        if rate_limit is not None and rate_limit < 1:
            raise ValueError("rate_limit must be at least 1, or None for no limit")
        if rate_period <= 0:
            raise ValueError("rate_period must be positive")
        if window not in ("fixed", "sliding"):
            raise ValueError("window must be 'fixed' or 'sliding'")
        if response_delay < 0:
            raise ValueError("response_delay must not be negative")
        if not is_loopback_ip(host):
            raise ValueError("the fake server only listens on a loopback IP, e.g. 127.0.0.1")
        self._tokens = frozenset([token, *(tokens or ())])
        self._instances: dict[str, int | None] = dict.fromkeys(instances)
        self._limiter = RateLimiter(
            UNLIMITED if rate_limit is None else rate_limit, rate_period, window, window_phase
        )
        self._host = host
        self._port = port
        self._clock = clock
        self._keepalive_timeout = keepalive_timeout
        self._response_delay = response_delay
        self._stale_after = stale_after
        self._faults = FaultQueue()
        self._log = RequestLog(on_answered)
        self._runner: web.AppRunner | None = None
        self._site: CountingSite | None = None
        # Replaced by each start(): set by stop() to release parked (HANG, delayed) handlers.
        self._stopping = asyncio.Event()
        self._connections = ConnectionTracker()
        self._ssl_context = ssl_context

    def __repr__(self) -> str:  # never shows a token
        where = self.url if self._port else "not started"
        return f"<FakeRyzeServer {where} instances={sorted(self._instances)!r}>"

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port; known before start() only when one was given explicitly."""
        if not self._port:
            raise RuntimeError("the server has no port yet: start() it first")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:50123`` (no trailing slash; https with TLS)."""
        scheme = "http" if self._ssl_context is None else "https"
        return str(URL.build(scheme=scheme, host=self._host, port=self.port))

    async def start(self) -> None:
        """Start serving on `host`/`port` (port 0 picks a free one, kept across restarts)."""
        if self._runner is not None:
            raise RuntimeError("the server is already running")
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_response_prepare.append(self._stamp_date)
        runner = web.AppRunner(
            app,
            access_log=None,
            keepalive_timeout=self._keepalive_timeout,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        self._runner = runner
        self._stopping = asyncio.Event()
        try:
            await self._listen()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop serving; parked (HANG, delayed) requests are released unanswered. Idempotent."""
        runner, self._runner, self._site = self._runner, None, None
        if runner is None:
            return
        self._stopping.set()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def refuse_connections(self) -> None:
        """Close the listening socket so new connects get ECONNREFUSED; the port is kept.

        Idle keep-alive connections are closed too (as a server going down would), so a
        client cannot slip past the refusal on a pooled connection; requests in flight are
        answered, then their connection closes.
        """
        runner, site, self._site = self._runner, self._site, None
        if runner is None or site is None:
            return
        await site.stop()
        if runner.server is not None:
            self._connections.close_idle(runner.server)

    async def accept_connections(self) -> None:
        """Listen again on the same port after refuse_connections()."""
        if self._runner is None:
            raise RuntimeError("the server is not running: use start()")
        if self._site is None:
            await self._listen()

    async def _listen(self) -> None:
        if self._runner is None:  # pragma: no cover - guarded by callers
            raise RuntimeError("the server is not running")
        site = CountingSite(self._runner, self._host, self._port, self._connections.on_accept,
                            ssl_context=self._ssl_context)
        await site.start()
        self._port = site.port
        self._site = site

    # -- control -------------------------------------------------------------------------

    def fail_next(self, fault: Fault, times: int = 1) -> None:
        """Play `fault` on the next `times` call-route requests that pass the token check."""
        self._faults.push(fault, times)

    def set_fault(self, fault: Fault | None) -> None:
        """Play `fault` on every call-route request (after queued ones); None turns it off."""
        if fault is not None and not isinstance(fault, Fault):
            raise TypeError(f"expected a Fault or None, got {type(fault).__name__}")
        self._faults.persistent = fault

    def add_instance(self, name: str) -> None:
        """Create a connected instance (an existing one is reconnected)."""
        self._instances[name] = None

    def connect_instance(self, name: str) -> None:
        """Mark an existing instance connected to WhatsApp again."""
        self._require_instance(name)
        self._instances[name] = None

    def disconnect_instance(self, name: str, status: Literal[400, 503] = 503) -> None:
        """Answer calls on `name` with `status` and "Instance is not connected to WhatsApp"."""
        self._require_instance(name)
        if status not in (400, 503):
            raise ValueError("the API answers a disconnected instance with 400 or 503")
        self._instances[name] = status

    def _require_instance(self, name: str) -> None:
        if name not in self._instances:
            raise KeyError(f"no instance named {name!r}")

    def reset(self) -> None:
        """Forget recorded requests, faults and rate windows (instances and counts stay)."""
        self._log.clear()
        self._faults.clear()
        self._limiter.clear()

    # -- recording -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request that reached a handler since the last reset(), in arrival order."""
        return self._log.records

    @property
    def placed_calls(self) -> list[RecordedRequest]:
        """The call-route requests answered 200: the calls the "API" placed."""
        return [r for r in self._log.records if r.route in ("audio", "fake") and r.status == 200]

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since start (not cleared by reset())."""
        return self._connections.accepted

    # A default bound, not the caller's asyncio.timeout: a test that forgets one must not hang.
    async def wait_for_requests(
        self, count: int = 1, *, timeout: float = 30.0  # noqa: ASYNC109
    ) -> None:
        """Return once at least `count` requests are recorded (e.g. a HANG is parked).

        Bounded: after `timeout` seconds it raises `TimeoutError` saying how many arrived, so a
        test whose requests never come fails where it waited instead of hanging the suite.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._log.wait_for(count)
        except TimeoutError:
            raise TimeoutError(
                f"waited {timeout:g} s for {count} request(s); {len(self.requests)} arrived"
            ) from None


    # -- request handling ----------------------------------------------------------------

    async def _stamp_date(self, request: web.Request, response: web.StreamResponse) -> None:
        # The client must compare X-RateLimit-Reset with the server's Date, so both come
        # from the same (injectable) clock; second resolution, like real servers.
        response.headers[hdrs.DATE] = formatdate(self._clock(), usegmt=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        now = self._clock()
        transport = request.transport
        path, _, query = request.raw_path.partition("?")
        route, instance = classify(request.method, path)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raw, too_large = b"", True
        except ConnectionError:  # the client left mid-body: nothing to record or answer
            return drop_connection(request)
        else:
            too_large = False
        parsed = parse_body(raw)
        record = RecordedRequest(
            method=request.method,
            path=path,
            route=route,
            instance=instance,
            headers=HeaderDict(request.headers.items()),
            body=raw,
            json=parsed.value,
            received_at=now,
            status=None,
            connection_id=self._connections.id_of(transport),
            query=query,
        )
        idle = self._connections.idle_for(transport)
        self._log.append(record)
        self._connections.begin(transport)
        status: int | None = None
        try:
            if self._stale_after is not None and idle is not None and idle >= self._stale_after:
                return drop_connection(request)
            if self._response_delay and await self._stopped_within(self._response_delay):
                return drop_connection(request)
            if too_large:
                response: web.StreamResponse = outcome_response(
                    error(413, "Request body too large")
                )
            else:
                response = await self._respond(request, route, instance, parsed, now)
            status = None if isinstance(response, Unanswered) else response.status
            return response
        finally:
            self._connections.end(transport)
            self._log.answered(record, status)

    async def _stopped_within(self, delay: float) -> bool:
        """Sleep `delay` seconds unless stop() comes first (then True)."""
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return False
        return True

    async def _respond(
        self,
        request: web.Request,
        route: Route,
        instance: str | None,
        parsed: ParsedBody,
        now: float,
    ) -> web.StreamResponse:
        """The answer, or `Unanswered` when the connection was closed instead."""
        if route == "health":
            return web.json_response({"status": "ok", "service": "RyzeAPI"})
        if route == "other":
            return outcome_response(error(404, "Not Found"))
        token = token_of(request)
        if token is None or token not in self._tokens:
            message = "Missing token in header" if token is None else "Invalid token"
            return outcome_response(error(401, message))
        fault = self._faults.take()
        if fault is not None:
            return await self._play(
                fault, request, route=route, parsed=parsed, token=token, now=now
            )
        return self._answer_call(route, instance, parsed, token, now)

    def _answer_call(
        self, route: CallRoute, instance: str | None, parsed: ParsedBody, token: str, now: float
    ) -> web.Response:
        """Rate limit, then instance, then body: the real API's check order."""
        accepted, state = self._limiter.acquire(token, now)
        if not accepted:
            return rate_limited(state)
        headers = state.headers()
        if not instance:
            outcome = error(400, "Instance name is required")
        elif instance not in self._instances:
            outcome = error(404, "instance not found")
        elif (disconnected := self._instances[instance]) is not None:
            outcome = error(disconnected, NOT_CONNECTED)
        else:
            outcome = call_outcome(route, parsed)
        return outcome_response(outcome, headers)

    async def _play(
        self,
        fault: Fault,
        request: web.Request,
        *,
        route: CallRoute,
        parsed: ParsedBody,
        token: str,
        now: float,
    ) -> web.StreamResponse:
        if fault is Fault.DROP_AFTER_READ:
            return drop_connection(request)
        if fault is Fault.HANG:
            await self._stopping.wait()
            return drop_connection(request)
        if fault is Fault.RATE_LIMITED:
            return rate_limited(self._limiter.peek(token, now))
        if fault is Fault.TRUNCATED:
            await send_truncated(request, call_outcome(route, parsed).body)
            return drop_connection(request)
        return simple_fault_response(fault, f"{self.url}/redirected")


class ServerFactory(Protocol):
    """The type of the ``ryze_server_factory`` pytest fixture."""

    def __call__(self, **kwargs: Any) -> Awaitable[FakeRyzeServer]:
        """Create and start a server from `FakeRyzeServer`'s keyword arguments."""
        ...
