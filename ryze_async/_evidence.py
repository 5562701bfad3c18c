"""An error's evidence: what an answered (or unanswered) call leaves on the error it raised,
safe to keep and log (issue 11): the headers that matter, a redacted body excerpt, the call's
kind and instance, and for an unknown outcome whether and when the request was sent."""

from __future__ import annotations

import datetime

from ._config import ClientConfig
from ._exceptions import APIError, OutcomeUnknownError, QuotaTimeoutError, RyzeError
from ._retry import OutgoingCall
from ._transports import RawResponse

__all__ = ["EXCERPT_CHARS", "annotate", "attach"]

#: How much of a server's text an error or a message shows.
EXCERPT_CHARS = 200

#: The answer's headers an error keeps: what a person needs to judge a refusal or a failure.
_EVIDENCE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                     "Retry-After", "Date")


def attach(
    error: APIError | OutcomeUnknownError, response: RawResponse, config: ClientConfig
) -> None:
    """The answer's evidence on its error: the headers that matter and a body excerpt,
    both redacted (a server that echoes the token must not put it in an error)."""
    headers = response.headers
    kept = {name: config.redact(headers[name]) for name in _EVIDENCE_HEADERS if name in headers}
    error.headers = {name: value if len(value) <= 100 else config.secret.excerpt(value, 100)
                     for name, value in kept.items()}
    text = response.body[:4 * EXCERPT_CHARS].decode("utf-8", "replace").strip()
    error.body_excerpt = config.secret.excerpt(text, EXCERPT_CHARS)


def annotate(error: RyzeError, call: OutgoingCall) -> None:
    """The call's own facts on an error it raised: kind, instance, whether and when sent."""
    if isinstance(error, APIError | OutcomeUnknownError | QuotaTimeoutError):
        error.kind = call.kind
        error.instance = call.instance
    if isinstance(error, OutcomeUnknownError) and call.sent_at is not None:
        error.sent = True
        error.sent_at = datetime.datetime.fromtimestamp(call.sent_at, datetime.UTC)
    elif isinstance(error, QuotaTimeoutError):
        error.max_wait = call.max_wait


