"""Wire models: strict request bodies going out, tolerant results coming back."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from json.encoder import encode_basestring_ascii
from typing import TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ._media import Media
from ._numbers import normalize_number

__all__ = [
    "AudioCallBody",
    "CallResult",
    "FakeCallBody",
    "RateLimitFields",
    "RateLimitInfo",
    "audio_wire_parts",
    "parse_rate_limit",
    "rate_limit_fields",
    "seconds_until_reset",
]


class _RequestModel(BaseModel):
    # Strict: a typo'd or extra key is a bug on our side, never something to send.
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True,
        arbitrary_types_allowed=True,
    )


class _CallBody(_RequestModel):
    number: str
    """Destination, normalised: E.164 digits without ``+``, or a personal JID."""

    @field_validator("number")
    @classmethod
    def _normalised(cls, value: str, info: ValidationInfo) -> str:
        context = info.context or {}
        return normalize_number(
            value, allow_lid=bool(context.get("allow_lid")),
            default_region=context.get("default_region"),
            number_check=context.get("number_check", "valid"),
        )


class AudioCallBody(_CallBody):
    """Body of ``POST /api/call/audio/{instance}``."""

    media: Media
    """Exactly one media source, already validated and encoded."""

    def to_wire(self) -> bytes:
        """The JSON body; the media member is spliced in pre-encoded (never re-encoded)."""
        return b"".join(self.wire_parts())

    def wire_parts(self) -> tuple[bytes, bytes, bytes]:
        """The JSON body in three parts, the shared media member untouched in the middle.

        Sent part by part, a multi-MiB media member is never copied into a per-call buffer.
        """
        return audio_wire_parts(self.number, self.media)


def audio_wire_parts(number: str, media: Media) -> tuple[bytes, bytes, bytes]:
    """The audio call body for an already normalised ``number``, in three parts."""
    # What json.dumps(number) returns for a str (it calls exactly this), minus its dispatch.
    quoted = encode_basestring_ascii(number).encode()
    return b'{"number":' + quoted + b",", media.wire_fragment, b"}"


class FakeCallBody(_CallBody):
    """Body of ``POST /api/call/fake/{instance}``."""

    duration: int | None = Field(default=None, ge=1, le=60)
    """Seconds the phone rings, 1 to 60; omitted means the server's default (8)."""

    def to_wire(self) -> bytes:
        """The JSON body, with no ``null`` members."""
        return json.dumps(self.model_dump(exclude_none=True), separators=(",", ":")).encode()


class _ResponseModel(BaseModel):
    # Tolerant: the server may add fields at any time; a new field must not break callers.
    model_config = ConfigDict(
        extra="ignore", frozen=True, populate_by_name=True, use_attribute_docstrings=True
    )


class RateLimitInfo(_ResponseModel):
    """The ``X-RateLimit-*`` headers of a response."""

    limit: int | None = None
    """Requests allowed in the current period (``X-RateLimit-Limit``)."""
    remaining: int | None = None
    """Requests still available in it (``X-RateLimit-Remaining``)."""
    reset: float | None = None
    """Unix time, on the server's clock, when the counter resets (``X-RateLimit-Reset``)."""


class CallResult(_ResponseModel):
    """A placed call. ``success`` says the call was placed, not that it was answered."""

    success: bool
    """True when the server placed the call."""
    message: str = ""
    """The server's message, e.g. ``"Audio call placed"``."""
    call_id: str | None = Field(default=None, alias="callId")
    """The call's id, assigned by WhatsApp."""
    number: str | None = None
    """The number the server dialled."""
    duration: int | None = None
    """Seconds the phone rings (fake calls only)."""
    status: int = 200
    """The HTTP status of the answer."""
    rate_limit: RateLimitInfo | None = None
    """The quota as the server reported it in this answer."""


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    # "inf", "nan" or 1e400 would break the int() and the arithmetic after a placed call.
    return value if math.isfinite(value) else None


class RateLimitFields(TypedDict):
    """``RateLimitInfo``'s fields, read from the headers but not yet a model."""

    limit: int | None
    remaining: int | None
    reset: float | None


def rate_limit_fields(headers: Mapping[str, str]) -> RateLimitFields | None:
    """Read the three ``X-RateLimit-*`` headers; None when the answer carried none of them.

    A plain dict: a success report validates it inside ``CallResult`` (one pydantic pass instead
    of two per call); ``parse_rate_limit`` makes the model.
    """
    limit = _header_number(headers, "X-RateLimit-Limit")
    remaining = _header_number(headers, "X-RateLimit-Remaining")
    reset = _header_number(headers, "X-RateLimit-Reset")
    if limit is None and remaining is None and reset is None:
        return None
    return {
        "limit": None if limit is None else int(limit),
        "remaining": None if remaining is None else int(remaining),
        "reset": reset,
    }


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """Read the three ``X-RateLimit-*`` headers; None when the answer carried none of them."""
    fields = rate_limit_fields(headers)
    return None if fields is None else RateLimitInfo.model_validate(fields)


def seconds_until_reset(headers: Mapping[str, str], reset: float | None) -> float | None:
    """Seconds from now until ``reset``, measured on the server's clock via its ``Date`` header.

    The local clock may be off by minutes; the server's Date and Reset come from the same clock.
    Both have one-second resolution, so the result can be up to about a second long, which errs
    on the safe side. Without a usable Date the local wall clock stands in.
    """
    if reset is None:
        return None
    date = headers.get("Date")
    server_now = _parse_date(date) if date else None
    if server_now is None:
        server_now = time.time()
    return max(0.0, reset - server_now)


# The Date header changes once a second, and parsing it costs more than the rest of a response's
# handling: the last value is kept (one entry, so no growth and no lock needed).
_last_date: tuple[str, float | None] = ("", None)


def _parse_date(date: str) -> float | None:
    global _last_date  # noqa: PLW0603 - a one-entry cache, replaced whole (atomic under the GIL)
    cached = _last_date
    if cached[0] == date:
        return cached[1]
    try:
        moment = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        parsed: float | None = None
    else:
        # "-0000" parses as a naive datetime, which timestamp() would read as local time;
        # every HTTP date is UTC (RFC 9110 5.6.7).
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        parsed = moment.timestamp()
    _last_date = (date, parsed)
    return parsed
