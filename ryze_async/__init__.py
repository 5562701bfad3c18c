"""ryze_async: an async client for RyzeAPI's WhatsApp voice-call endpoints.

Exact quota, typed errors, crash-safe campaigns, and never a second call to the same person
by accident::

    async with RyzeClient(token=..., instance="my-instance") as client:
        result = await client.audio_call("5511999999999", media_url="https://example.com/m.mp3")
"""

# Lazy (PEP 562): ``import ryze_async`` loads no submodule, so it costs less than importing
# aiohttp (the CLI's ``--help`` and a script that only catches our errors pay for nothing they do
# not use). A name is imported from its module on first access, then cached in this namespace.
import typing as _typing
from importlib import import_module as _import_module

from ._version import __version__

if _typing.TYPE_CHECKING:  # what mypy and IDEs see: the same names, imported eagerly
    from ._campaign import Campaign, CampaignClient, run_campaign
    from ._campaign.dry_run import CampaignPlan
    from ._campaign.outcomes import CampaignOutcome, CampaignSummary, StopReason
    from ._client import BeforeSend, NotSent, RyzeClient
    from ._exceptions import (
        APIError,
        AuthenticationError,
        BadRequestError,
        ClaimLostError,
        ClientClosedError,
        ConnectionFailedError,
        InputError,
        InstanceNotConnectedError,
        InstanceNotFoundError,
        InvalidRequestError,
        JournalConnectionLostError,
        JournalError,
        JournalLockedError,
        JournalMismatchError,
        OutcomeUnknownError,
        PermissionDeniedError,
        QuotaBackendError,
        QuotaTimeoutError,
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
    from ._media import Media
    from ._models import CallResult, RateLimitInfo
    from ._numbers import NumberCheck, normalize_number
    from ._quota import QuotaBackend, QuotaLimiter
    from ._quota.redis.quota import RedisQuota
    from ._transports import RawResponse, Transport

#: Where each public name lives.
_EXPORTS: dict[str, str] = {
    "APIError": "._exceptions",
    "AuthenticationError": "._exceptions",
    "BadRequestError": "._exceptions",
    "BeforeSend": "._client",
    "CallResult": "._models",
    "ClaimLostError": "._exceptions",
    "Campaign": "._campaign",
    "CampaignClient": "._campaign",
    "CampaignOutcome": "._campaign.outcomes",
    "CampaignOutcomeRecorded": "._hooks",
    "CampaignPlan": "._campaign.dry_run",
    "CampaignSummary": "._campaign.outcomes",
    "ClientClosedError": "._exceptions",
    "ConnectionFailedError": "._exceptions",
    "Hooks": "._hooks",
    "InputError": "._exceptions",
    "InstanceNotConnectedError": "._exceptions",
    "InstanceNotFoundError": "._exceptions",
    "InvalidRequestError": "._exceptions",
    "JournalConnectionLostError": "._exceptions",
    "JournalError": "._exceptions",
    "JournalLockedError": "._exceptions",
    "JournalMismatchError": "._exceptions",
    "Media": "._media",
    "NotSent": "._client",
    "NumberCheck": "._numbers",
    "OutcomeUnknownError": "._exceptions",
    "PermissionDeniedError": "._exceptions",
    "QuotaBackend": "._quota",
    "QuotaBackendError": "._exceptions",
    "QuotaLimiter": "._quota",
    "QuotaTimeoutError": "._exceptions",
    "QuotaWaitEnded": "._hooks",
    "QuotaWaitStarted": "._hooks",
    "RawResponse": "._transports",
    "RedisQuota": "._quota.redis.quota",  # imports redis (the 'redis' extra): only when used
    "RequestEnded": "._hooks",
    "RequestStarted": "._hooks",
    "RetryScheduled": "._hooks",
    "RateLimitError": "._exceptions",
    "RateLimitInfo": "._models",
    "RyzeClient": "._client",
    "RyzeError": "._exceptions",
    "ServerError": "._exceptions",
    "StopReason": "._campaign.outcomes",
    "Transport": "._transports",
    "normalize_number": "._numbers",
    "run_campaign": "._campaign",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(module, __name__), name)
    globals()[name] = value  # later lookups find it without calling this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
    "CampaignPlan",
    "CampaignSummary",
    "ClaimLostError",
    "ClientClosedError",
    "ConnectionFailedError",
    "Hooks",
    "InputError",
    "InstanceNotConnectedError",
    "InstanceNotFoundError",
    "InvalidRequestError",
    "JournalConnectionLostError",
    "JournalError",
    "JournalLockedError",
    "JournalMismatchError",
    "Media",
    "NotSent",
    "NumberCheck",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "QuotaBackend",
    "QuotaBackendError",
    "QuotaLimiter",
    "QuotaTimeoutError",
    "QuotaWaitEnded",
    "QuotaWaitStarted",
    "RateLimitError",
    "RateLimitInfo",
    "RawResponse",
    "RedisQuota",
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
