"""``shared_limiter``: one ``QuotaLimiter`` per event loop, server and token (its sha256 only)."""

from __future__ import annotations

import asyncio
import hashlib
import weakref

from yarl import URL

from .local import QuotaLimiter, users_limiter

__all__ = ["quota_digest", "shared_limiter"]


# Per event loop (asyncio objects belong to one loop; weak so closed loops, e.g. pytest's
# per-test loops, are not kept alive), then per token digest: the raw token is never stored.
# A limiter holds no reference to its loop while nobody waits, so the weak key can die.
_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, QuotaLimiter]] = (
    weakref.WeakKeyDictionary()
)


def _origin(url: str) -> str:
    """scheme://host:port of a base URL, as the server's quota is per server (and token)."""
    parsed = URL(url)
    if not parsed.is_absolute():
        return url
    return f"{parsed.scheme}://{(parsed.host or '').lower()}:{parsed.port}"


def quota_digest(token: str, server: str) -> str:
    """sha256 hex of the server's origin and the token: one quota's name, never the token."""
    digest = hashlib.sha256()
    digest.update(_origin(server).encode("utf-8", "surrogatepass"))
    digest.update(b"\0")
    digest.update(token.encode("utf-8"))
    return digest.hexdigest()


def shared_limiter(
    token: str,
    limit: int,
    period: float,
    margin: float | None,
    *,
    server: str = "",
    learn_first: bool = False,
    reserve: int = 0,
    user: object,
) -> QuotaLimiter:
    """The limiter every client of the running loop shares for `token` on `server`.

    `server` is a base URL; two servers on one token are two quotas, keyed by URL origin.
    The first call creates it (with `learn_first`, see `QuotaLimiter`). `user` (the client)
    joins it with its configuration: the strictest of the joined users' holds (lower limit,
    longer period, larger margin, larger interactive reserve) until that user leaves
    (``limiter.leave(user)``, a client's ``aclose``), while what was admitted stays counted.
    Clients in other event loops, threads or processes get their own limiter and do not share
    the quota's bookkeeping. Bad settings raise before anything is shared (``join`` checks
    them). Call it in the running loop.
    """
    loop = asyncio.get_running_loop()
    key = quota_digest(token, server)
    per_loop = _registry.get(loop)
    if per_loop is None:
        per_loop = _registry[loop] = {}
    limiter = per_loop.get(key)
    if limiter is None:
        limiter = per_loop[key] = users_limiter(
            limit, period, margin, learn_first=learn_first, reserve=reserve)
    limiter.join(user, limit, period, margin, reserve)
    return limiter
