"""Every error ryze_async raises, and the one table that maps an HTTP status to its class.

The tree (``RyzeError`` is the root of everything the API or the network can cause)::

    RyzeError
    ├── InvalidRequestError (also ValueError)  bad input caught before sending: nothing was sent
    ├── APIError                               RyzeAPI itself refused the call (its JSON envelope)
    │   ├── BadRequestError                    400
    │   ├── AuthenticationError                401
    │   ├── PermissionDeniedError              403
    │   ├── InstanceNotFoundError              404
    │   ├── InstanceNotConnectedError          400 or 503 whose envelope says "not connected"
    │   ├── RateLimitError                     429 (envelope or not), after every allowed resend
    │   └── ServerError                        >= 500 in RyzeAPI's envelope: it failed, not placed
    ├── ConnectionFailedError                  the request provably never reached the server
    └── OutcomeUnknownError                    the request may have been processed: never resent
                                               (``.status`` when an HTTP status came back)

    ClientClosedError (a RuntimeError, outside the tree)  misuse: the client was closed

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
rebuilds an error from its ``args`` and attributes, whatever its constructor's signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ._models import RateLimitInfo

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConnectionFailedError",
    "InputError",
    "InstanceNotConnectedError",
    "InstanceNotFoundError",
    "InvalidRequestError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "RateLimitError",
    "RyzeError",
    "ServerError",
    "error_for_status",
]


def _rebuild(cls: type[RyzeError], args: tuple[object, ...]) -> RyzeError:
    error = cls.__new__(cls)
    error.args = args
    return error


class RyzeError(Exception):
    """Root of every error the RyzeAPI service or the network can cause."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The default rebuilds with cls(*args), which keyword-only constructors refuse.
        return (_rebuild, (type(self), self.args), self.__dict__)


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


class APIError(RyzeError):
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
        super().__init__(message, status=status, rate_limit=rate_limit)
        #: Unix time (server clock) when the server said its counter resets, if it said.
        self.reset_at = reset_at


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


class OutcomeUnknownError(RyzeError):
    """The request may have been processed (the call may be ringing); it is never resent.

    ``status`` is the HTTP status when an answer came back (a proxy's page, an unreadable or
    oversize answer), None when none did (hang-up, timeout).
    """

    def __init__(
        self, message: str, *, status: int | None = None, rate_limit: RateLimitInfo | None = None
    ) -> None:
        super().__init__(message if status is None else f"HTTP {status}: {message}")
        self.message = message
        self.status = status
        self.rate_limit = rate_limit


class ClientClosedError(RuntimeError):
    """The client was used after ``aclose()``: a programming error, not a RyzeAPI failure."""


_NOT_CONNECTED_MARKERS = ("not connected", "disconnected")

# The one status-to-class table; anything missing falls back by range in error_for_status.
_BY_STATUS: dict[int, type[APIError]] = {
    cls.status_code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        InstanceNotFoundError,
        RateLimitError,
    )
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
