"""Which quota backend a client gets: the in-process limiter, or with a ``quota_url`` (or
``RYZE_QUOTA_URL``) the Redis quota every process and host on the token shares.

Only this module and `redis` know about Redis; ``redis`` is imported only when a URL is given,
and a URL never appears in a message (its password would): errors name the scheme only.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING

from .._exceptions import InvalidRequestError
from .shared import quota_digest

if TYPE_CHECKING:
    from .redis.quota import RedisQuota

__all__ = ["INSTALL", "checked_quota_url", "redis_quota"]

INSTALL = 'the shared quota (quota_url) needs redis: pip install "ryze-async[redis]"'
_SCHEMES = ("redis", "rediss", "unix")


def checked_quota_url(url: object, *, rate_limit: int | None) -> str | None:
    """The quota URL to use (`url`, else ``RYZE_QUOTA_URL``; None: none), refused at once when
    it is not a Redis URL or the ``redis`` package is missing."""
    from_env = url is None
    if from_env:
        url = os.environ.get("RYZE_QUOTA_URL", "").strip() or None
        if url is None or rate_limit is None:  # no client-side quota: nothing to share
            return None
    if not isinstance(url, str):
        raise InvalidRequestError(
            f"quota_url must be a str, not {type(url).__name__}", field="quota_url")
    if rate_limit is None:
        raise InvalidRequestError(
            "quota_url shares the client-side quota, which rate_limit=None turns off",
            field="quota_url")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        where = "RYZE_QUOTA_URL" if from_env else "quota_url"
        raise InvalidRequestError(
            f"{where} must be a redis://HOST:PORT/DB, rediss:// or unix:// URL "
            f"(its scheme is {scheme!r})", field="quota_url")
    try:
        redis_module = import_module(".redis.quota", __package__)
    except ImportError:
        raise InvalidRequestError(INSTALL, field="quota_url") from None
    redis_module.check_url(url, name="RYZE_QUOTA_URL" if from_env else "quota_url")
    return url


def redis_quota(
    url: str, *, token: str, server: str, limit: int, period: float, margin: float | None,
    reserve: int = 0,
) -> RedisQuota:
    """The shared quota of `token` on `server`, keyed by a hash of both (never the token)."""
    from .redis.quota import RedisQuota  # noqa: PLC0415 - redis only when a URL was given

    return RedisQuota.from_url(
        url, token_digest=quota_digest(token, server), limit=limit, period=period, margin=margin,
        reserve=reserve,
    )
