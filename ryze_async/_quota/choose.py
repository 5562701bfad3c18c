"""Which quota backend a client gets: the in-process limiter, or with a ``quota_url`` (or
``RYZE_QUOTA_URL``) the Redis quota every process and host on the token shares.

Only this module and `redis` know about Redis; ``redis`` is imported only when a URL is given,
and a URL never appears in a message (its password would): errors name the scheme only.
"""

from __future__ import annotations

import os
import ssl
from importlib import import_module
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from .._exceptions import InvalidRequestError
from .._urls import scrub, shown_url
from .shared import quota_digest

if TYPE_CHECKING:
    from . import QuotaBackend
    from .redis.quota import RedisQuota

__all__ = ["INSTALL", "checked_quota_url", "connect_shared_quota", "redis_quota"]

INSTALL = 'the shared quota (quota_url) needs redis: pip install "ryze-async[redis]"'
_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel",
            "rediss+sentinel")


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
            f"{where} must be a redis://HOST:PORT/DB, rediss://, unix://, "
            f"redis+cluster://HOST:PORT,HOST:PORT or redis+sentinel://HOST:PORT,HOST:PORT/MASTER"
            f" URL (its scheme is {scheme!r})", field="quota_url")
    try:
        redis_module = import_module(".redis.quota", __package__)
    except ImportError:
        raise InvalidRequestError(INSTALL, field="quota_url") from None
    where = "RYZE_QUOTA_URL" if from_env else "quota_url"
    redis_module.check_url(url, name=where)
    _check_tls(url, scheme, where)
    return url


def _check_tls(url: str, scheme: str, where: str) -> None:
    """Refuse TLS settings redis-py would only trip on at the first admission: ``ssl_*`` on a
    plain URL (a TypeError in its connection), an unknown ``ssl_cert_reqs``, a CA file that
    is missing or holds no certificate."""
    query = dict(parse_qsl(url.partition("?")[2].partition("#")[0]))
    fault = None
    named = sorted(k for k in query if k.startswith("ssl_"))
    if named and not scheme.startswith("rediss"):
        fault = f"{', '.join(named)} needs a rediss:// URL (TLS)"
    elif query.get("ssl_cert_reqs", "required") not in ("none", "optional", "required"):
        fault = "ssl_cert_reqs must be none, optional or required"
    elif "ssl_ca_certs" in query:
        try:
            ssl.create_default_context(cafile=query["ssl_ca_certs"])
        except (OSError, ssl.SSLError) as exc:  # FileNotFoundError is an OSError
            fault = (f"ssl_ca_certs {query['ssl_ca_certs']} cannot be used as a CA file "
                     f"({getattr(exc, 'strerror', None) or exc})")
    if fault is not None:
        raise InvalidRequestError(
            f"{where} {shown_url(url)}: {scrub(fault, url)}; nothing was sent", field="quota_url")


async def connect_shared_quota(quota: QuotaBackend | None, url: str) -> None:
    """Open the shared quota's first connection now (TLS handshake, AUTH, SELECT): a setting the
    server refuses is an `InvalidRequestError` before anything is sent. A Redis that is down or
    unreachable is not a setting: the first admission fails closed, as when it goes down later.
    """
    connect = getattr(quota, "connect", None)
    if connect is None:
        return
    from .redis.topology import FAILURES  # noqa: PLC0415 - redis only with a URL

    try:
        await connect()
    except FAILURES as exc:
        fault = _refused_setting(exc)
        if fault is not None:
            raise InvalidRequestError(
                f"quota_url {shown_url(url)} was refused: {scrub(fault, url)}; nothing was sent",
                field="quota_url") from None


def _refused_setting(exc: BaseException) -> str | None:
    """What setting of the URL the server refused (None: no setting, e.g. a Redis down)."""
    from redis.exceptions import RedisClusterException  # noqa: PLC0415

    # A cluster wraps what its nodes answered (e.g. "cannot be connected"): look beneath.
    while isinstance(exc, RedisClusterException) and (exc.__cause__ or exc.__context__):
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return _refused(exc)


def _refused(exc: BaseException) -> str | None:
    from redis.exceptions import AuthenticationError, NoPermissionError  # noqa: PLC0415

    from .redis.topology import UnknownMasterError  # noqa: PLC0415

    if isinstance(exc, UnknownMasterError):
        return str(exc)
    if isinstance(exc, AuthenticationError):
        return f"{exc} (check the user and password in the URL, and the user's ACL rule)"
    if isinstance(exc, NoPermissionError):
        return f"{exc} (the URL's user: see its ACL rule in the docs)"
    return _tls_fault(exc)


def _tls_fault(exc: BaseException) -> str | None:
    """Why the TLS handshake under `exc` failed (None: it was no TLS failure)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (f"the Redis server's TLS certificate was refused ({cause.verify_message}): "
                "check ssl_ca_certs (the CA that signed it) and the host name in the URL")
    if isinstance(cause, ssl.SSLError):
        return f"the TLS handshake failed ({cause.reason or cause}): is it a TLS port?"
    return None


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
