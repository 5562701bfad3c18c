"""Reading an answer: its rate-limit feedback, then what it means (a ``CallResult`` or an error).

Everything here runs after the request reached the server, so a fault in reading an answer is
an ``OutcomeUnknownError`` (``unreadable``), never something a caller could take for "not
placed". What the server said is redacted before it goes into a result or a message: a server
that echoes the token must not put it in a ``CallResult`` or an exception.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypedDict

from pydantic import ValidationError

from ._config import ClientConfig
from ._evidence import EXCERPT_CHARS as _EXCERPT_CHARS
from ._evidence import attach
from ._exceptions import APIError, OutcomeUnknownError, RyzeError, error_for_status
from ._models import CallResult, RateLimitInfo
from ._quota import QuotaBackend
from ._transports import RawResponse

__all__ = [
    "RateLimitFields", "feedback", "interpret", "rate_limit_fields", "rate_limited_delay",
    "retry_after_seconds", "seconds_until_reset", "unreadable",
]

# Optional: orjson parses an answer about 7x faster than json, a few microseconds of every call.
_orjson_loads: Callable[[bytes], Any] | None
try:
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - tests force this path by setting it to None
    _orjson_loads = None
# A JSON number of 19 digits or more may be outside 64 bits. A number token follows ":", "," or
# "[" (and maybe blanks and "-"), so digits inside strings (ids, phone numbers) rarely match.
_LONG_INTEGER = re.compile(rb"[:,\[]\s*-?[0-9]{19}")
# That search costs more than orjson's whole parse; it can only match where 19 digits run in a
# row, which every digit made "0" shows with one substring test (a copy, no regex).
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_ZEROS = b"0" * 19
_validate_result = CallResult.__pydantic_validator__.validate_python


class RateLimitFields(TypedDict):
    """``RateLimitInfo``'s fields, read from the headers but not yet a model."""

    limit: int | None
    remaining: int | None
    reset: float | None


_RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def rate_limit_fields(headers: Mapping[str, str]) -> RateLimitFields | None:
    """Read the three ``X-RateLimit-*`` headers; None when the answer carried none of them.

    A plain dict: a success report validates it inside ``CallResult`` (one pydantic pass).
    A value that is no finite number counts as absent.
    """
    get = headers.get
    values: list[float | None] = []
    for name in _RATE_HEADERS:  # one loop, no call per header: every answer comes through here
        raw = get(name)
        value = None
        if raw is not None:
            try:
                value = float(raw)
            except ValueError:
                # float() skips some blanks itself, strip() more ("0\x1f"): only what float()
                # refused is stripped (a number float() read reads the same stripped).
                with contextlib.suppress(ValueError):
                    value = float(raw.strip())
            if value is not None and not math.isfinite(value):
                value = None  # "inf", "nan" or 1e400 would break the int() and the arithmetic
        values.append(value)
    limit, remaining, reset = values
    if limit is None and remaining is None and reset is None:
        return None
    return {
        "limit": None if limit is None else int(limit),
        "remaining": None if remaining is None else int(remaining),
        "reset": reset,
    }


# The Date header changes once a second and parsing it costs more than the rest of an answer's
# handling; a few recent values are kept.
@functools.lru_cache(maxsize=8)
def http_date(value: str) -> float | None:
    """Unix seconds of an HTTP date; every HTTP date is UTC, whatever zone it spells."""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC by RFC 9110, not local time
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def seconds_until_reset(headers: Mapping[str, str], reset: float | None) -> float | None:
    """Seconds from now until ``reset``, measured on the server's clock via its ``Date`` header.

    The local clock may be off by minutes; the server's Date and Reset come from the same clock.
    Both have one-second resolution, so the result can be up to about a second long, which errs
    on the safe side. Without a usable Date the local wall clock stands in.
    """
    if reset is None:
        return None
    date = headers.get("Date")
    server_now = http_date(date) if date else None
    if server_now is None:
        server_now = time.time()
    return max(0.0, reset - server_now)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds, or an HTTP date read on the
    server's clock via its ``Date``); None when absent or unusable."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    when = http_date(value)
    date = headers.get("Date")
    now = http_date(date) if date is not None else None
    if when is None or now is None:
        return None  # no server clock to read the date against: ours may be off by minutes
    delay = when - now
    return max(delay, 0.0) if math.isfinite(delay) else None


def rate_limited_delay(
    response: RawResponse, reset_after: float | None, period: float
) -> float:
    """A 429's wait: its Retry-After, else its reset, else one period."""
    delay = retry_after_seconds(response.headers)
    if delay is None:
        delay = period if reset_after is None else reset_after
    # A reset in the wrong unit (milliseconds, say) must not park the caller for days.
    return min(max(delay, 0.0), 2 * period + 5)


def feedback(
    response: RawResponse, quota: QuotaBackend | None, slot: float | None
) -> tuple[RateLimitFields | None, float | None]:
    """The answer's rate-limit fields and seconds to their reset, fed to ``quota``."""
    try:
        rate = rate_limit_fields(response.headers)
        # Only the quota and a 429 need the reset; most answers skip the Date arithmetic.
        reset_after = (
            seconds_until_reset(response.headers, rate["reset"] if rate else None)
            if response.status == 429 or (quota is not None and rate is not None)
            else None
        )
        if quota is not None and rate is not None:
            quota.observe(limit=rate["limit"], remaining=rate["remaining"],
                          reset_after=reset_after, admitted_at=slot)
    except Exception as exc:
        raise unreadable(response, exc) from exc
    return rate, reset_after


def unreadable(response: RawResponse, exc: Exception) -> OutcomeUnknownError:
    # The request reached the server: a fault in reading its answer must not escape as
    # something a caller could take for "not placed".
    return OutcomeUnknownError(
        f"HTTP {response.status}: the answer could not be read "
        f"({type(exc).__name__}); the call may have been placed"
    )


def interpret(
    response: RawResponse, rate: RateLimitFields | None, config: ClientConfig
) -> CallResult:
    """The answer's ``CallResult``; raises the matching ``RyzeError`` for anything else."""
    try:
        return _interpret(response, rate, config)
    except (APIError, OutcomeUnknownError) as exc:
        attach(exc, response, config)
        raise
    except RyzeError:
        raise
    except Exception as exc:
        error = unreadable(response, exc)
        attach(error, response, config)
        raise error from exc


def _interpret(
    response: RawResponse, rate: RateLimitFields | None, config: ClientConfig
) -> CallResult:
    status = response.status
    data = _json_object(response.body)
    if not 200 <= status < 300:
        error = _error(response, data, rate, config)
        del data  # what the server said stays out of the traceback's locals
        raise error
    if data is None or data.get("success") is not True:
        raise OutcomeUnknownError(
            f"the body is not a success report ({_describe(response, config)}); "
            "the call may have been placed",
            status=status,
        )
    try:
        # data is this answer's own fresh dict: completed in place, not copied, and
        # validated once with the rate limit inside.
        _redact_fields(data, config)
        data["status"] = status
        data["rate_limit"] = rate
        # What CallResult.model_validate(data) calls, without its Python frame.
        return _validate_result(data)  # type: ignore[no-any-return]
    except ValidationError:
        raise OutcomeUnknownError(
            f"a malformed success report ({_describe(response, config)}); "
            "the call may have been placed",
            status=status,
        ) from None


def _redact_fields(data: dict[str, Any], config: ClientConfig) -> None:
    # A server that echoes the token (in its message, say) must not put it in a CallResult.
    redact = config.secret.redact
    for key in ("message", "callId", "number"):
        value = data.get(key)
        if type(value) is str:
            data[key] = redact(value)


def _error(
    response: RawResponse, data: dict[str, Any] | None, rate: RateLimitFields | None,
    config: ClientConfig,
) -> RyzeError:
    """The error for an error status: only RyzeAPI's envelope can say "not placed"."""
    status = response.status
    error = data.get("error") if data is not None and data.get("success") is False else None
    api_message = error.get("message") if isinstance(error, dict) else None
    if isinstance(api_message, str):
        message = config.redact(api_message)
    elif 300 <= status < 400:
        location = config.secret.excerpt(response.headers.get("Location", "?"), 200)
        message = f"redirect to {location} not followed (the token stays with the base URL)"
    else:
        message = _describe(response, config)
    info = None if rate is None else RateLimitInfo.model_validate(rate)
    reset_at = info.reset if info is not None else None
    return error_for_status(
        status, message, rate_limit=info, from_api=isinstance(api_message, str),
        reset_at=reset_at,
    )


def _describe(response: RawResponse, config: ClientConfig) -> str:
    content_type = config.redact(response.headers.get("Content-Type", "no content type"))
    # The whole (capped) body is redacted before it is cut: a cut first could leave a
    # prefix of the token that no longer matches it.
    text = response.body.decode("utf-8", "replace").strip()
    excerpt = config.secret.excerpt(text, _EXCERPT_CHARS)
    return f"{content_type[:100]}, {len(response.body)} bytes: {excerpt}"


def _json_object(body: bytes) -> dict[str, Any] | None:
    data: Any
    # orjson refuses what json accepts (NaN, Infinity, a BOM, UTF-16, lone surrogates) and reads
    # integers beyond 64 bits as floats: json has the last word on those, so an answer reads
    # exactly as it does without orjson.
    if _orjson_loads is not None and not _long_integer(body):
        try:
            data = _orjson_loads(body)
        except ValueError:
            pass
        else:
            return data if isinstance(data, dict) else None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _long_integer(body: bytes) -> bool:
    """Whether ``body`` may hold a JSON integer of 19 digits or more (``_LONG_INTEGER``)."""
    return _NINETEEN_ZEROS in body.translate(_DIGITS_AS_ZERO) and bool(_LONG_INTEGER.search(body))
