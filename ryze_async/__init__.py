"""ryze_async: an async client for RyzeAPI's WhatsApp voice-call endpoints.

Exact quota, typed errors, crash-safe campaigns, and never a second call to the same person
by accident::

    async with RyzeClient(token=..., instance="my-instance") as client:
        result = await client.audio_call("5511999999999", media_url="https://example.com/m.mp3")
"""

from ._campaign import Campaign, CampaignClient, run_campaign
from ._campaign._journal import JournalError, JournalLockedError, JournalMismatchError
from ._campaign._models import CampaignOutcome, CampaignSummary, StopReason
from ._client import BeforeSend, NotSent, RyzeClient
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConnectionFailedError,
    InputError,
    InstanceNotConnectedError,
    InstanceNotFoundError,
    InvalidRequestError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    RyzeError,
    ServerError,
)
from ._limiter import QuotaLimiter
from ._media import Media
from ._models import CallResult, RateLimitInfo
from ._numbers import normalize_number
from ._version import __version__

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BeforeSend",
    "CallResult",
    "Campaign",
    "CampaignClient",
    "CampaignOutcome",
    "CampaignSummary",
    "ClientClosedError",
    "ConnectionFailedError",
    "InputError",
    "InstanceNotConnectedError",
    "InstanceNotFoundError",
    "InvalidRequestError",
    "JournalError",
    "JournalLockedError",
    "JournalMismatchError",
    "Media",
    "NotSent",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "QuotaLimiter",
    "RateLimitError",
    "RateLimitInfo",
    "RyzeClient",
    "RyzeError",
    "ServerError",
    "StopReason",
    "__version__",
    "normalize_number",
    "run_campaign",
]
