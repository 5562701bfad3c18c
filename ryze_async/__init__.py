"""ryze_async: an async client for RyzeAPI's WhatsApp voice-call endpoints.

Exact quota, typed errors, crash-safe campaigns, and never a second call to the same person
by accident::

    async with RyzeClient(token=..., instance="my-instance") as client:
        result = await client.audio_call("5511999999999", media_url="https://example.com/m.mp3")
"""

from ._campaign import Campaign, CampaignClient, run_campaign
from ._campaign_models import CampaignOutcome, CampaignSummary, StopReason
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
from ._hooks import (
    CampaignOutcomeRecorded,
    Hooks,
    QuotaWaitEnded,
    QuotaWaitStarted,
    RequestEnded,
    RequestStarted,
    RetryScheduled,
)
from ._journal import JournalError, JournalLockedError, JournalMismatchError
from ._media import Media
from ._models import CallResult, RateLimitInfo
from ._numbers import normalize_number
from ._quota import QuotaBackend, QuotaLimiter
from ._transports import RawResponse, Transport
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
    "CampaignOutcomeRecorded",
    "CampaignSummary",
    "ClientClosedError",
    "ConnectionFailedError",
    "Hooks",
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
    "QuotaBackend",
    "QuotaLimiter",
    "QuotaWaitEnded",
    "QuotaWaitStarted",
    "RateLimitError",
    "RateLimitInfo",
    "RawResponse",
    "RequestEnded",
    "RequestStarted",
    "RetryScheduled",
    "RyzeClient",
    "RyzeError",
    "ServerError",
    "StopReason",
    "Transport",
    "__version__",
    "normalize_number",
    "run_campaign",
]
