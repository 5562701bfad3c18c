"""Every error ryze_async raises, and the one table that maps an HTTP status to its class.

The tree. ``RyzeError`` is the root of everything the API or the network can cause, and of bad
input refused before sending; what a local program or disk causes stands outside it::

    RyzeError
    ├── InvalidRequestError (also ValueError)  bad input caught before sending: nothing was sent
    │   └── InputError                         a numbers file that is no list of numbers
    ├── APIError                               RyzeAPI itself refused the call (its JSON envelope)
    │   ├── BadRequestError                    400
    │   ├── AuthenticationError                401
    │   ├── PermissionDeniedError              403
    │   ├── InstanceNotFoundError              404
    │   ├── InstanceNotConnectedError          400 or 503 whose envelope says "not connected"
    │   ├── RateLimitError                     429 (envelope or not), after every allowed resend
    │   └── ServerError                        >= 500 in RyzeAPI's envelope: it failed, not placed
    ├── ConnectionFailedError                  the request provably never reached the server
    ├── QuotaBackendError                      the shared quota (Redis) failed: nothing was sent
    ├── QuotaTimeoutError                      no quota slot within ``max_wait``: nothing was sent
    └── OutcomeUnknownError                    the request may have been processed: never resent
                                               (``.status`` when an HTTP status came back;
                                               ``.sent``/``.sent_at``: whether and when sent)

Every ``APIError`` and ``OutcomeUnknownError`` also carries its evidence (``_Evidence``): the
headers that matter, a redacted body excerpt, the call's ``kind`` and ``instance``.

    ClientClosedError (a RuntimeError)         misuse: the client was closed
    JournalError                               the campaign journal cannot be used as asked
    ├── ClaimLostError                         a shared journal gave the number to another worker
    ├── JournalConnectionLostError             the journal's database went away mid-campaign
    ├── JournalLockedError                     another process runs a campaign on it
    └── JournalMismatchError                   it belongs to another media, instance or kind

Why the journal errors are not ``RyzeError``s: they say nothing about a call. Code that wraps
each call in ``except RyzeError`` (the campaign dispatcher, a user's loop) treats what it catches
as that call's outcome; a journal that cannot be written must instead stop the campaign before
anyone else is dialled, so it must not be caught there by accident. Nor are they ``OSError``s
(an engine's ``except OSError`` would mistake a locked or mismatched journal for a bad path).

One signal for "may have been placed": ``except OutcomeUnknownError`` catches every such case,
and no other class is ever raised for one. Only RyzeAPI's own JSON error envelope
(``{"success": false, "error": {"message": "..."}}``) can say "not placed": an answer with an
error status whose body is anything else (a proxy's HTML 502/503/504, an empty 500, a 413 or 400
page from nginx, a 3xx, an oversize body) is an ``OutcomeUnknownError`` carrying ``.status``.
Why not treat a proxy's 4xx as "never reached RyzeAPI"? A proxy usually answers 4xx before
forwarding, but nothing in its answer proves it: a CDN or WAF may answer after the upstream
did (a body rewrite, a response-size limit, an auth layer in front of a buffering proxy), and
a client cannot tell which from the bytes it got back. A wrong "not placed" calls a person
twice; a wrong "unknown" costs a manual check, so the client is conservative. The one exception
is 429, whoever sends it: a rate limiter refuses before passing the request on, and the
server's reset is honoured before anything is sent again. "not connected" is believed only from
the envelope's message, never from text in a page. Messages never contain the token.

What is safe to send again: ``ConnectionFailedError`` and ``RateLimitError`` (the server
rejected or never saw the request). What is not: ``OutcomeUnknownError``.

Every class pickles (users hand errors across process pools): ``RyzeError.__reduce__``
rebuilds an error from its ``args`` and attributes, whatever its constructor's signature, and
by its public path (``ryze_async.RateLimitError``).
"""

from __future__ import annotations

import copyreg
import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ._public import public

if TYPE_CHECKING:
    from ._models import RateLimitInfo

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ClaimLostError",
    "ClientClosedError",
    "ConnectionFailedError",
    "InputError",
    "InstanceNotConnectedError",
    "InstanceNotFoundError",
    "InvalidRequestError",
    "JournalConnectionLostError",
    "JournalError",
    "JournalLockedError",
    "JournalMismatchError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "QuotaBackendError",
    "QuotaTimeoutError",
    "RateLimitError",
    "RyzeError",
    "ServerError",
    "error_for_status",
]


class RyzeError(Exception):
    """Root of every error the RyzeAPI service or the network can cause."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The default rebuilds with cls(*args), which keyword-only constructors refuse:
        # ``cls.__new__(cls, *args)`` sets ``args`` without ``__init__``, and names nothing
        # private, so a pickle survives a move of this module.
        return (copyreg.__newobj__, (type(self), *self.args), self.__dict__)  # type: ignore[attr-defined]


class InvalidRequestError(RyzeError, ValueError):
    """The input was refused before anything was sent."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The argument at fault (``"number"``, ``"media"``, ...), when one is.
        self.field = field


class InputError(InvalidRequestError):
    """The numbers input is not a readable list of numbers (raised before any call, and before
    a journal is created): binary, undecodable, no number column, or no entries at all."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="numbers")


class _Evidence:
    """What an answered (or unanswered) call leaves behind that is safe to keep and log.

    ``headers``: the answer's headers that matter (``X-RateLimit-*``, ``Date``,
    ``Retry-After``), redacted; ``body_excerpt``: the start of its body, redacted (None: no
    answer); ``kind`` (``"audio"``/``"fake"``) and ``instance``: the call's, when the client
    raised the error. None of them ever holds the token.
    """

    headers: Mapping[str, str]
    body_excerpt: str | None
    kind: str | None
    instance: str | None

    def _no_evidence(self) -> None:
        self.headers = {}
        self.body_excerpt = None
        self.kind = None
        self.instance = None


class APIError(_Evidence, RyzeError):
    """RyzeAPI answered with its error envelope: the call was not placed."""

    #: The status this class stands for in the lookup table (0 for the base and fallbacks).
    status_code: ClassVar[int] = 0

    def __init__(
        self, message: str, *, status: int, rate_limit: RateLimitInfo | None = None
    ) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.rate_limit = rate_limit
        self._no_evidence()


class BadRequestError(APIError):
    """400: the server refused the request's content."""

    status_code = 400


class AuthenticationError(APIError):
    """401: the token is missing or invalid."""

    status_code = 401


class PermissionDeniedError(APIError):
    """403: the token is valid but does not own the instance."""

    status_code = 403


class InstanceNotFoundError(APIError):
    """404: no instance of that name on this account."""

    status_code = 404


class InstanceNotConnectedError(APIError):
    """400 or 503 whose envelope says the instance is not connected to WhatsApp."""


class RateLimitError(APIError):
    """429 after every allowed wait-and-resend; the last 429 was not a placed call."""

    status_code = 429

    def __init__(
        self,
        message: str,
        *,
        status: int = 429,
        rate_limit: RateLimitInfo | None = None,
        reset_at: float | None = None,
    ) -> None:
        if reset_at is not None and (rate_limit is None or rate_limit.reset is None):
            # Kept for callers that pass the reset alone: it is stored where it belongs.
            from ._models import RateLimitInfo as Info  # noqa: PLC0415 - pydantic, rare path

            rate_limit = (Info(reset=reset_at) if rate_limit is None
                          else rate_limit.model_copy(update={"reset": reset_at}))
        super().__init__(message, status=status, rate_limit=rate_limit)

    @property
    def reset_at(self) -> float | None:
        """Unix time (server clock) when the server said its counter resets, if it said:
        ``rate_limit.reset``, one value kept in one place."""
        return None if self.rate_limit is None else self.rate_limit.reset


class ServerError(APIError):
    """>= 500 in RyzeAPI's own envelope: it handled the request and failed. Never resent.

    An error status without the envelope (a proxy's page) is an ``OutcomeUnknownError`` instead.
    """

    #: Kept for compatibility: always False now (what may have been processed is an
    #: ``OutcomeUnknownError``). ``from_api`` is accepted and ignored for the same reason.
    may_have_been_processed: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int,
        rate_limit: RateLimitInfo | None = None,
        from_api: bool = True,
    ) -> None:
        super().__init__(message, status=status, rate_limit=rate_limit)


class ConnectionFailedError(RyzeError):
    """The request never reached the server (refused, DNS, connect timeout, TLS).

    Safe to send again later. ``retryable`` is False for TLS and certificate failures, which
    no retry can fix; ``attempts`` counts the tries made.
    """

    def __init__(self, message: str, *, retryable: bool = True, attempts: int = 1) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.attempts = attempts


class QuotaBackendError(RyzeError):
    """The shared quota backend (Redis) failed or could not be reached: nothing was sent.

    The client fails closed: it never falls back to a quota it does not share. Safe to try
    again once the backend is back.
    """


class QuotaTimeoutError(RyzeError):
    """The call could not be admitted by the quota within its ``max_wait``: nothing was sent.

    Raised at once when the quota already knows the caller's turn comes later (the queue ahead
    and the log of admissions tell), else when ``max_wait`` runs out. ``available_in`` is the
    earliest the quota could admit the call, in seconds from when it was refused (a lower
    bound: later arrivals of a higher lane or a server's hold may push it back; None when the
    wait ran out instead). Safe to try again later.
    """

    def __init__(
        self, message: str, *, max_wait: float | None = None, available_in: float | None = None,
        kind: str | None = None, instance: str | None = None,
    ) -> None:
        super().__init__(message)
        self.max_wait = max_wait
        self.available_in = available_in
        #: The call's kind ("audio" or "fake") and instance, when the client raised it.
        self.kind = kind
        self.instance = instance


class OutcomeUnknownError(_Evidence, RyzeError):
    """The request may have been processed (the call may be ringing); it is never resent.

    ``status`` is the HTTP status when an answer came back (a proxy's page, an unreadable or
    oversize answer), None when none did (hang-up, timeout). ``sent``: whether the request
    began to be sent (its bytes were handed to a connection; True unless the client knows
    otherwise); ``sent_at``: when, as a UTC ``datetime`` (None: unknown).
    """

    def __init__(
        self, message: str, *, status: int | None = None, rate_limit: RateLimitInfo | None = None,
        sent: bool = True, sent_at: datetime.datetime | None = None,
    ) -> None:
        super().__init__(message if status is None else f"HTTP {status}: {message}")
        self.message = message
        self.status = status
        self.rate_limit = rate_limit
        self.sent = sent
        self.sent_at = sent_at
        self._no_evidence()


class ClientClosedError(RuntimeError):
    """The client was used after ``aclose()``: a programming error, not a RyzeAPI failure."""


class JournalError(Exception):
    """The journal cannot be used as asked (missing, locked, mismatched, unwritable)."""


class JournalConnectionLostError(JournalError):
    """The connection to the journal's database was lost mid-campaign (PostgreSQL stopped,
    restarted or unreachable) and could not be made again within the worker's reconnect
    deadline (``reconnect_deadline``, ``--reconnect-deadline``): nothing more is sent through
    it. Not the user's input: the CLI exits 5. Start again once the database is back; an
    interrupted send is ``unknown``."""


class JournalLockedError(JournalError):
    """Another process has this journal open for a campaign."""


class ClaimLostError(JournalError):
    """This worker no longer holds the number (its lease ran out and another worker took it,
    or it left the campaign): it must not be sent. Nothing else is wrong with the journal."""


class JournalMismatchError(JournalError):
    """The journal belongs to a campaign with a different media, instance or call kind."""


# Every class of the tree, at once (``public``: shown and pickled as ``ryze_async.X``).
for _name in __all__:
    _cls = globals().get(_name)  # error_for_status comes below: not a class
    if isinstance(_cls, type):
        public(_cls)
del _name, _cls


_NOT_CONNECTED_MARKERS = ("not connected", "disconnected")

# The one status-to-class table for RyzeAPI's envelope; 429 never reaches it (error_for_status
# answers a 429 first, whoever sent it), and anything missing falls back by range.
_BY_STATUS: dict[int, type[APIError]] = {
    cls.status_code: cls
    for cls in (BadRequestError, AuthenticationError, PermissionDeniedError, InstanceNotFoundError)
}


def error_for_status(
    status: int,
    message: str,
    *,
    rate_limit: RateLimitInfo | None = None,
    from_api: bool = True,
    reset_at: float | None = None,
) -> APIError | OutcomeUnknownError:
    """The error for an HTTP error answer; ``from_api``: the body is RyzeAPI's JSON envelope.

    Without the envelope nothing proves the call was not placed (see the module docstring):
    every status but 429 is then an ``OutcomeUnknownError``.
    """
    if status == 429:
        return RateLimitError(message, rate_limit=rate_limit, reset_at=reset_at)
    if not from_api:
        return OutcomeUnknownError(
            f"{message}; not RyzeAPI's answer, the call may have been placed",
            status=status, rate_limit=rate_limit,
        )
    lowered = message.lower()
    if status in (400, 503) and any(marker in lowered for marker in _NOT_CONNECTED_MARKERS):
        return InstanceNotConnectedError(message, status=status, rate_limit=rate_limit)
    if status >= 500:
        return ServerError(message, status=status, rate_limit=rate_limit)
    cls = _BY_STATUS.get(status, APIError)
    return cls(message, status=status, rate_limit=rate_limit)
