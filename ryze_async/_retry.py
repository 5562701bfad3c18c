"""The retry boundary: one admitted call's attempts, resent only while provably never sent.

Exactly one kind of failure is retried: ``ConnectionFailedError`` with ``retryable`` set, i.e. the
TCP connection was never made, so the server cannot have seen the request. Everything else,
above all ``OutcomeUnknownError`` and any HTTP answer, passes through untouched: resending a
request the server may have processed would call a person twice.

Why a plain loop and not tenacity: every attempt is framed by the caller's hooks
(``before_send`` before it, ``on_not_sent`` between a proven not-sent failure and the wait), the
wait must end when the client closes, each step is reported to instrumentation hooks, and the
first attempt, which almost always succeeds, must cost nothing extra (a tenacity retry state
costs 20-30 µs, a large share of the per-call budget). Expressed through tenacity that took a
replayed first failure and a patched attempt count; as a loop it reads top to bottom. The
backoff is tenacity's ``wait_random_exponential`` formula: full jitter, uniform in
``[0, min(backoff_max, backoff_initial * 2 ** (attempt - 1))]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ._checks import check_settings
from ._config import Secret
from ._exceptions import ConnectionFailedError, OutcomeUnknownError
from ._hooks import CallKind, HookDispatch, RequestEnded, RequestStarted, RetryScheduled
from ._quota import Lane
from ._transports import LEAVING, RawResponse, Transport

__all__ = ["CallSender", "OutgoingCall", "RetryPolicy", "SlotGate"]

_log = logging.getLogger("ryze_async")
Sleep = Callable[[float], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]


class SlotGate(Protocol):
    """The quota slot an attempt goes with, checked the moment before its request leaves."""

    def late(self) -> bool:
        """Whether the attempt is too late for its slot (no round trip)."""
        ...

    async def readmit(self) -> bool:
        """Take a slot of now instead (True); False: none fits now, the slot was given back."""
        ...

    async def wait(self) -> None:
        """Wait for the call's next slot in its lane (its deadline applies)."""
        ...

    def left(self) -> None:
        """The request is leaving now (its bytes written): the slot's time becomes now
        when it is later than the slot (never waits)."""
        ...


def _leaving(call: OutgoingCall, gate: SlotGate) -> Callable[[], None]:
    def left() -> None:
        call.left = True
        gate.left()
    return left


@dataclass(slots=True)
class OutgoingCall:
    """One call on its way: what to send where, the caller's hooks, and whether it got out."""

    kind: CallKind
    instance: str
    url: str
    body: bytes | Sequence[bytes]
    before_send: Hook | None
    on_not_sent: Hook | None
    #: True once an attempt may have reached the server (set before each send, cleared when
    #: one proves it never did): a slot whose call never reached the server is given back.
    reached: bool = False
    #: True once the current attempt's first byte began to leave, as a transport that tells
    #: (``tells_leaving``) reports it: cancelled before then, the attempt provably sent nothing.
    left: bool = False
    #: Attempts sent so far, over every admission of the call (a 429 goes round again).
    attempts: int = 0
    #: Unix time the last attempt began sending (None: none did).
    sent_at: float | None = None
    #: The quota lane when not the default ("interactive"), the call's max_wait and the loop
    #: time by which the quota must admit it, and the bound of each attempt (None: none).
    lane: Lane | None = None
    max_wait: float | None = None
    deadline: float | None = None
    timeout: float | None = None

    def went(self) -> None:
        """The current attempt's first byte is leaving (a transport's ``LEAVING`` call)."""
        self.left = True


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, for failures that never reached the server."""

    max_retries: int
    backoff_initial: float
    backoff_max: float

    def __post_init__(self) -> None:
        check_settings(max_retries=self.max_retries, backoff_initial=self.backoff_initial,
                       backoff_max=self.backoff_max)

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2.0 ** (attempt - 1))
        return random.uniform(0.0, max(ceiling, 0.0))


class CallSender:
    """Sends a call's attempts through one transport, with one client's policy and hooks."""

    __slots__ = ("_headers", "_hooks", "_policy", "_sleep", "_tells", "_transport")

    def __init__(
        self, transport: Transport, headers: Mapping[str, str | Secret], policy: RetryPolicy,
        sleep: Sleep, hooks: HookDispatch | None,
    ) -> None:
        self._transport = transport
        # Only a transport that says when a request leaves (through LEAVING) can prove that a
        # cancelled attempt sent nothing; a user's own is taken as having sent.
        self._tells = getattr(transport, "tells_leaving", False) is True
        self._headers = headers
        self._policy = policy
        self._sleep = sleep
        self._hooks = hooks

    async def send(self, call: OutgoingCall, gate: SlotGate | None = None) -> RawResponse:
        """The call's answer: the first attempt, plus resends of what provably never left.
        With a quota, ``gate`` keeps every attempt within its slot as it leaves: checked before
        the transport is asked, and told by the transport when the request leaves."""
        # Told when a request leaves (here, not in a wrapper: no frame more for every
        # suspension of the call): the quota's slot, and whether a cancel sent nothing.
        watched = gate is not None or self._tells
        if watched:
            leaving = LEAVING.set(call.went if gate is None else _leaving(call, gate))
        try:
            attempt = 1
            while True:
                if call.before_send is not None:
                    await call.before_send()
                # The last await before the first byte is behind us: a loop that stalled since
                # admission (or a slow before_send) shows here, and only here can it be undone.
                if gate is not None and gate.late() and not await self._placed_again(call, gate):
                    continue
                try:
                    if call.timeout is None:
                        return await self._attempt(call)
                    return await self._bounded(call, call.timeout)
                except ConnectionFailedError as exc:
                    await self._not_sent(call, exc, attempt)
                attempt += 1
        except asyncio.CancelledError:
            # `reached` and not `left`: cancelled inside an attempt, before its first byte (a
            # cancel in before_send or in a quota wait is not in an attempt: reached is False,
            # or, after a 429, left is still True).
            if self._tells and call.reached and not call.left:
                await self._cancelled_unsent(call)
            raise
        finally:
            if watched:
                LEAVING.reset(leaving)

    async def _not_sent(self, call: OutgoingCall, exc: ConnectionFailedError, attempt: int) -> None:
        """Attempt ``attempt`` provably never reached the server: give up (raise), or tell the
        caller and wait out the backoff before the next one."""
        call.reached = False  # the transport proved it never reached the server
        if not exc.retryable or attempt > self._policy.max_retries:
            if attempt == 1:
                raise exc
            raise ConnectionFailedError(
                str(exc), retryable=exc.retryable, attempts=attempt
            ) from None
        delay = self._policy.delay(attempt)
        _log.warning(
            "request not sent (%s); retrying in %.2f s (attempt %d)", exc, delay, attempt + 1
        )
        if self._hooks is not None:
            self._hooks.emit("on_retry_scheduled", RetryScheduled(
                call.kind, call.instance, call.attempts + 1, delay, "not_sent"))
        if call.on_not_sent is not None:  # proven never sent: the caller may record it so
            await call.on_not_sent()
        await self._sleep(delay)

    @staticmethod
    async def _cancelled_unsent(call: OutgoingCall) -> None:
        """Cancelled before its first byte left (a slow connect, a stop): provably not sent.
        Its slot is given back and ``on_not_sent`` is awaited before the cancellation goes on
        (a campaign's row goes back to pending, not to unknown); what the hook raises is
        dropped, as the cancellation is what the caller hears."""
        call.reached = False
        if call.on_not_sent is not None:
            with contextlib.suppress(Exception):
                await call.on_not_sent()

    async def _placed_again(self, call: OutgoingCall, gate: SlotGate) -> bool:
        """A late attempt goes with a slot of now (True) or, when none fits, sends nothing:
        the caller hears it was not sent and, once its next slot comes, ``before_send`` runs
        again before that attempt (False)."""
        if await gate.readmit():
            return True
        _log.debug("request later than its quota slot and none free now; waiting for another")
        if call.on_not_sent is not None:
            await call.on_not_sent()
        await gate.wait()
        return False

    def _attempt(self, call: OutgoingCall) -> Awaitable[RawResponse]:
        """One attempt, marked as maybe reaching the server; its awaitable is the transport's
        own (no frame of ours in between). ``send`` clears ``reached`` when the transport
        proves the request never left."""
        call.reached = True
        call.left = False
        call.attempts += 1
        call.sent_at = time.time()
        if self._hooks is None:
            return self._transport.send(call.url, self._headers, call.body)
        return self._observed(call, call.attempts, self._hooks)

    async def _bounded(self, call: OutgoingCall, bound: float) -> RawResponse:
        """One attempt bounded by the call's own ``timeout``: sending and the answer."""
        try:
            async with asyncio.timeout(bound):
                return await self._attempt(call)
        except TimeoutError:
            # Conservative even if it was still connecting: from here nobody can tell.
            raise OutcomeUnknownError(
                f"no complete answer within the call's timeout of {bound:g} s; "
                "the call may have been placed"
            ) from None

    async def _observed(self, call: OutgoingCall, attempt: int, hooks: HookDispatch) -> RawResponse:
        started_at = RequestStarted(call.kind, call.instance, attempt, call.url)
        hooks.emit("on_request_started", started_at)
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            response = await self._transport.send(call.url, self._headers, call.body)
        except ConnectionFailedError:
            call.reached = False
            error = "ConnectionFailedError"
            raise
        except BaseException as exc:
            error = type(exc).__name__
            raise
        else:
            status = response.status
            return response
        finally:
            hooks.emit("on_request_ended", RequestEnded(
                call.kind, call.instance, attempt, call.url, status, error,
                time.perf_counter() - started, call.reached))
