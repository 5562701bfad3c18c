"""Wire models of what comes back: tolerant results (the strict request bodies are in
``_bodies``). They depend on nothing of ours, so ``_exceptions`` may build one."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ._public import public

__all__ = ["CallResult", "RateLimitInfo"]


class _ResponseModel(BaseModel):
    # Tolerant: the server may add fields at any time; a new field must not break callers.
    model_config = ConfigDict(
        extra="ignore", frozen=True, populate_by_name=True, use_attribute_docstrings=True
    )


@public
class RateLimitInfo(_ResponseModel):
    """The ``X-RateLimit-*`` headers of a response."""

    limit: int | None = None
    """Requests allowed in the current period (``X-RateLimit-Limit``)."""
    remaining: int | None = None
    """Requests still available in it (``X-RateLimit-Remaining``)."""
    reset: float | None = None
    """Unix time, on the server's clock, when the counter resets (``X-RateLimit-Reset``)."""


@public
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
