"""Wire models: strict request bodies (validation only: ``_bodies`` writes the JSON), tolerant
results coming back."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ._media import Media
from ._numbers import normalize_number

__all__ = ["AudioCallBody", "CallResult", "FakeCallBody", "RateLimitInfo"]


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



class FakeCallBody(_CallBody):
    """Body of ``POST /api/call/fake/{instance}``."""

    duration: int | None = Field(default=None, ge=1, le=60)
    """Seconds the phone rings, 1 to 60; omitted means the server's default (8)."""


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
