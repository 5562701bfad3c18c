"""Instrumentation hooks, in the style of stamina's ``RetryHook``: plain objects told what happened.

Give ``RyzeClient(hooks=...)`` one object or a sequence; each may define any of the methods of
``Hooks`` (subclass it to get no-op defaults). Every method gets one frozen details object. The
details never carry the token or a phone number: a hook feeds metrics and traces, places that
are not meant to hold either. A hook runs synchronously on the event loop, so keep it short; one
that raises is logged (``ryze_async`` logger) and the call goes on as if it had not been there.

With no hooks the client never builds a details object: instrumentation costs nothing unused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ._public import public

__all__ = [
    "CampaignOutcomeRecorded",
    "HookDispatch",
    "Hooks",
    "QuotaWaitEnded",
    "QuotaWaitStarted",
    "RequestEnded",
    "RequestStarted",
    "RetryScheduled",
]

_log = logging.getLogger("ryze_async")
CallKind = Literal["audio", "fake"]


@public
@dataclass(frozen=True, slots=True)
class RequestStarted:
    """An attempt is about to send its first byte (``before_send`` has run)."""

    kind: CallKind
    instance: str
    #: 1 for the first attempt of a call, 2 for its first resend, ...
    attempt: int
    #: The endpoint's URL; the token travels in a header, never in it.
    url: str


@public
@dataclass(frozen=True, slots=True)
class RequestEnded:
    """An attempt is over: an answer came back (``status``) or it failed (``error``)."""

    kind: CallKind
    instance: str
    attempt: int
    url: str
    #: The HTTP status, or None when no answer came back.
    status: int | None
    #: The failure's class name (``"ConnectionFailedError"``, ...), or None with an answer.
    error: str | None
    #: Seconds from the first byte sent to the answer read (or the failure).
    duration: float
    #: False only when the request provably never reached the server.
    sent: bool


@public
@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """The client will send again after ``delay`` seconds; ``attempt`` is the one to come."""

    kind: CallKind
    instance: str
    attempt: int
    delay: float
    #: ``"not_sent"`` (the connection was never made) or ``"rate_limited"`` (a 429).
    reason: Literal["not_sent", "rate_limited"]


@public
@dataclass(frozen=True, slots=True)
class QuotaWaitStarted:
    """A call found no quota slot free and starts waiting for one."""

    kind: CallKind
    instance: str


@public
@dataclass(frozen=True, slots=True)
class QuotaWaitEnded:
    """A call that waited for quota got its slot (or stopped waiting: closed, cancelled)."""

    kind: CallKind
    instance: str
    #: Seconds waited, on the event loop's clock.
    waited: float
    #: False when the wait ended without a slot.
    admitted: bool


@public
@dataclass(frozen=True, slots=True)
class CampaignOutcomeRecorded:
    """A campaign recorded the final outcome of one of its numbers (never the number itself)."""

    #: The outcome's state as the journal stores it (``"placed"``, ``"failed"``, ...).
    state: str
    #: The HTTP status behind it, when there was one.
    status: int | None
    #: False when no request for the number was ever sent (an invalid entry, or one refused
    #: before its first byte): a number the campaign dealt with, but not a call.
    sent: bool = True


@public
class Hooks:
    """Every hook method, as no-ops: subclass and override what you need.

    Any object with some of these methods works too; nothing requires this base class.
    """

    def on_request_started(self, details: RequestStarted) -> None:
        """An attempt is about to be sent."""

    def on_request_ended(self, details: RequestEnded) -> None:
        """An attempt is over."""

    def on_retry_scheduled(self, details: RetryScheduled) -> None:
        """The client will send the call again after a wait."""

    def on_quota_wait_started(self, details: QuotaWaitStarted) -> None:
        """A call starts waiting for quota."""

    def on_quota_wait_ended(self, details: QuotaWaitEnded) -> None:
        """A call's wait for quota is over."""

    def on_campaign_outcome(self, details: CampaignOutcomeRecorded) -> None:
        """A campaign recorded a number's outcome."""


_EVENTS = (
    "on_request_started", "on_request_ended", "on_retry_scheduled", "on_quota_wait_started",
    "on_quota_wait_ended", "on_campaign_outcome",
)


class HookDispatch:
    """The bound hook methods per event, resolved once; calls them, logging what raises."""

    __slots__ = ("_by_event",)

    def __init__(self, hooks: Sequence[object]) -> None:
        self._by_event: dict[str, tuple[Callable[[object], object], ...]] = {}
        for event in _EVENTS:
            found = (getattr(hook, event, None) for hook in hooks)
            self._by_event[event] = tuple(method for method in found if callable(method))

    @classmethod
    def of(cls, hooks: object | Sequence[object] | None) -> HookDispatch | None:
        """The dispatcher for ``hooks`` (one object or a sequence), None when there are none."""
        if hooks is None:
            return None
        listed = list(hooks) if isinstance(hooks, list | tuple) else [hooks]
        return cls(listed) if listed else None

    def emit(self, event: str, details: object) -> None:
        for method in self._by_event[event]:
            try:
                method(details)
            except Exception:
                # An observer must never change what a call does; its own failure is its story.
                _log.exception("ryze_async hook %s raised; ignored", event)
