"""Every error ryze_async raises, and the one table that maps an HTTP status to its class.

The tree (``RyzeError`` is the root of everything the API or the network can cause)::

    RyzeError
    ├── InvalidRequestError (also ValueError)  bad input caught before sending: nothing was sent
    ├── APIError                               the server answered with an error status
    │   ├── BadRequestError                    400
    │   ├── AuthenticationError                401
    │   ├── PermissionDeniedError              403
    │   ├── InstanceNotFoundError              404
    │   ├── InstanceNotConnectedError          400 or 503 whose message says "not connected"
    │   ├── RateLimitError                     429, after every allowed wait-and-resend
    │   └── ServerError                        >= 500, including bodies that are not JSON
    ├── ConnectionFailedError                  the request provably never reached the server
    └── OutcomeUnknownError                    the request may have been processed: never resent

    ClientClosedError (a RuntimeError, outside the tree)  misuse: the client was closed

What is safe to send again: ``ConnectionFailedError`` and ``RateLimitError`` (the server rejected or
never saw the request). What is not: ``OutcomeUnknownError`` and a ``ServerError`` whose
``may_have_been_processed`` is true. Messages never contain the token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

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


class RyzeError(Exception):
    """Root of every error the RyzeAPI service or the network can cause."""


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
    """The server answered with an error status; the call was not placed unless noted."""

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
    """400 or 503 saying the instance is not connected to WhatsApp."""


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
    """>= 500, or a body that is not RyzeAPI's JSON. Never resent automatically."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        rate_limit: RateLimitInfo | None = None,
        from_api: bool = False,
    ) -> None:
        super().__init__(message, status=status, rate_limit=rate_limit)
        #: False when RyzeAPI itself answered with its error envelope (it handled the request
        #: and reports a failure); True when something in between answered (a proxy's HTML 502,
        #: a gateway timeout), which may have forwarded the request before failing.
        self.may_have_been_processed = not from_api


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
    """The request may have been processed (the call may be ringing); it is never resent."""


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
) -> APIError:
    """Build the error for an HTTP error answer (``from_api``: RyzeAPI's own JSON envelope)."""
    lowered = message.lower()
    if status in (400, 503) and any(marker in lowered for marker in _NOT_CONNECTED_MARKERS):
        return InstanceNotConnectedError(message, status=status, rate_limit=rate_limit)
    if status >= 500:
        return ServerError(message, status=status, rate_limit=rate_limit, from_api=from_api)
    if status == 429:
        return RateLimitError(message, rate_limit=rate_limit, reset_at=reset_at)
    cls = _BY_STATUS.get(status, APIError)
    return cls(message, status=status, rate_limit=rate_limit)
