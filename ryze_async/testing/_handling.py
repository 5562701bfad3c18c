"""How the fake server answers one request: recording it, the token check, a queued fault
played, the rate limit, the instance, the body (``FakeRyzeServer``'s request handling; its
lifecycle and control are in ``_server.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from email.utils import formatdate
from typing import Final

from aiohttp import hdrs, web

from ._connections import ConnectionTracker
from ._faults import (
    Fault,
    FaultQueue,
    Unanswered,
    drop_connection,
    rate_limited,
    simple_fault_response,
)
from ._faults import truncated as send_truncated
from ._rate_window import RateLimiter
from ._records import HeaderDict, RecordedRequest, RequestLog, Route
from ._routing import classify, outcome_response, token_of
from ._validation import CallRoute, ParsedBody, call_outcome, error, parse_body

__all__ = ["NOT_CONNECTED", "RequestHandling"]

NOT_CONNECTED: Final = "Instance is not connected to WhatsApp"


class RequestHandling:
    """The request handler of :class:`~._server.FakeRyzeServer`, which sets this state."""

    _tokens: frozenset[str]
    _instances: dict[str, int | None]
    _limiter: RateLimiter
    _clock: Callable[[], float]
    _response_delay: float
    _stale_after: float | None
    _faults: FaultQueue
    _log: RequestLog
    _stopping: asyncio.Event
    _connections: ConnectionTracker

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:50123`` (no trailing slash)."""
        raise NotImplementedError  # pragma: no cover - the server's own

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
