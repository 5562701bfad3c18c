"""``RyzeClient``: validate, wait for quota, send once (plus safe retries), interpret.

One call flows one way through named steps (``_place``): build the body (``_bodies``), admit it
through the quota backend (``_quota``), send it with resends of what provably never left
(``_retry``, through the ``Transport`` of ``_transports``), take the answer's rate feedback in,
and interpret the answer (``_answers``); a 429 goes round again after its reset.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ._bodies import MediaArg, UrlMediaCache, call_body, media_source
from ._closing import CloseGuard
from ._config import ClientConfig, Secret
from ._exceptions import ClientClosedError
from ._hooks import HookDispatch
from ._media import Media
from ._models import CallResult
from ._numbers import NumberCheck, number_options
from ._options import UNSET, Unset
from ._pipeline import BeforeSend, NotSent, Pipeline
from ._public import public
from ._quota import Lane
from ._quota.choose import checked_quota_url
from ._retry import RetryPolicy, Sender
from ._tls import tls_setting
from ._transports import Transport

if TYPE_CHECKING:
    from ._tls import SslArg

__all__ = ["BeforeSend", "NotSent", "RyzeClient"]

_log = logging.getLogger("ryze_async")



@public
class RyzeClient(Pipeline):
    """Async client for RyzeAPI's call endpoints. Use ``async with`` or ``await aclose()``.

    ``token``, ``instance`` and ``base_url`` fall back to ``RYZE_TOKEN``, ``RYZE_INSTANCE`` and
    ``RYZE_BASE_URL``. Every client on the same server and token in the same event loop shares
    one quota limiter of ``rate_limit`` requests per ``rate_period`` seconds (``rate_limit=None``
    turns the client-side quota off: only for a server you run yourself). Only failures that
    provably sent nothing are retried (``max_retries`` times, exponential backoff with jitter); a
    429 waits for its ``Retry-After``, else the server's reset, else one ``rate_period``, and is
    sent again up to ``max_retries`` times. ``timeout`` bounds each attempt; connecting alone is
    bounded by ``connect_timeout`` (default: a third of ``timeout``, at most 10 s). Every call
    gets a fresh connection (``keepalive_timeout=0``): a pooled one may carry a stray answer that
    would be read as the call's own; ``keepalive_timeout > 0`` pools connections idle less than
    that many seconds, at that risk.

    ``ssl``: the TLS setting, as in aiohttp: an ``ssl.SSLContext``; the path of a CA bundle (a
    PEM file, or a directory in OpenSSL's hashed layout) whose certificates alone are trusted;
    or ``False`` (no verification) only with ``insecure_skip_verify=True``, and a WARNING. Default:
    ``RYZE_CA_FILE`` if set, else the system's roots. A CA path that cannot be used is an
    ``InvalidRequestError`` here.

    ``transport`` replaces the aiohttp transport (any object with the ``Transport`` methods,
    e.g. ``ryze_async.testing.MockTransport``); the connection settings above then do not apply.
    ``hooks``: one object or a sequence with any of the methods of ``ryze_async.Hooks``, told
    when a request starts and ends, a retry is scheduled, a quota wait begins and ends.

    ``priority``: the quota lane of this client's calls, ``"interactive"`` (admitted before
    any waiting bulk call) or ``"bulk"`` (campaigns); ``interactive_reserve`` keeps that many
    slots of every window free of bulk calls (the largest any client of the token asked for
    wins); ``max_wait``: the default longest wait for a quota slot, past which a call raises
    ``QuotaTimeoutError`` having sent nothing (None: as long as it takes).
    ``quota_url`` (default ``RYZE_QUOTA_URL``), e.g. ``"redis://HOST:PORT/DB"``: share the quota
    with every process and host that uses the same token and server through the same Redis
    (extra ``redis``; see ``RedisQuota``). If Redis is unreachable or fails, a call raises
    ``QuotaBackendError`` having sent nothing: never a silent fallback to an unshared quota.
    With a ``quota_url``, ``interactive_reserve`` holds for the other processes from the
    client's construction when an event loop is running, else from ``async with`` (at the
    latest, before its first call is admitted). A URL it cannot use is an
    ``InvalidRequestError`` here, its password never shown.
    """

    def __init__(
        self,
        token: str | None = None,
        instance: str | None = None,
        *,
        base_url: str | None = None,
        rate_limit: int | None = 100,
        rate_period: float = 60.0,
        rate_margin: float | None = None,
        max_retries: int = 3,
        timeout: float = 30.0,
        connect_timeout: float | None = None,
        keepalive_timeout: float = 0.0,
        allow_http: bool = False,
        max_media_bytes: int = 16 * 1024 * 1024,
        allow_lid: bool = False,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        default_region: str | None = None,
        number_check: NumberCheck = "valid",
        transport: Transport | None = None,
        hooks: object | Sequence[object] | None = None,
        priority: Lane = "interactive",
        interactive_reserve: int = 0,
        max_wait: float | None = None,
        quota_url: str | None = None,
        ssl: SslArg = None,
        insecure_skip_verify: bool = False,
    ) -> None:
        # The raw token leaves this frame's locals at once: a traceback of any error raised
        # below (a refused setting) must not carry it to an error tracker.
        secret = Secret(token)
        del token
        # Checked (and ``redis`` imported) here, not at the first call: a missing extra or a
        # URL that is not Redis's is a setting error. Kept out of every repr (its password).
        self._quota_url = checked_quota_url(quota_url, rate_limit=rate_limit)
        # Everything but the token and instance, for ``for_sender`` (a pool's other senders).
        self._options: dict[str, object] = {
            "base_url": base_url, "rate_limit": rate_limit, "rate_period": rate_period,
            "rate_margin": rate_margin, "max_retries": max_retries, "timeout": timeout,
            "connect_timeout": connect_timeout, "keepalive_timeout": keepalive_timeout,
            "allow_http": allow_http, "max_media_bytes": max_media_bytes,
            "allow_lid": allow_lid, "backoff_initial": backoff_initial,
            "backoff_max": backoff_max, "default_region": default_region,
            "number_check": number_check, "transport": transport, "hooks": hooks,
            "quota_url": self._quota_url,
        }
        self._owns_transport = True
        tls = tls_setting(ssl, insecure_skip_verify=insecure_skip_verify,
                          own_transport=transport is None)
        # Resolved once: a pool's senders share the context, and never read RYZE_CA_FILE again.
        self._options["ssl"] = True if tls is None else tls
        self._options["insecure_skip_verify"] = insecure_skip_verify
        self._config = ClientConfig.build(
            token=secret, instance=instance, base_url=base_url, rate_limit=rate_limit,
            rate_period=rate_period, rate_margin=rate_margin, max_retries=max_retries,
            timeout=timeout, connect_timeout=connect_timeout,
            keepalive_timeout=keepalive_timeout, allow_http=allow_http,
            max_media_bytes=max_media_bytes, priority=priority,
            interactive_reserve=interactive_reserve, max_wait=max_wait,
        )
        cfg = self._config
        region = default_region if default_region is not None else os.environ.get(
            "RYZE_DEFAULT_REGION", "").strip() or None
        self._numbers = number_options(
            allow_lid=allow_lid, default_region=region, number_check=number_check
        )
        if transport is None:
            from ._transports._aiohttp import AiohttpTransport  # noqa: PLC0415 - only if used

            transport = AiohttpTransport(
                timeout=cfg.timeout, connect_timeout=cfg.connect_timeout,
                keepalive_timeout=cfg.keepalive_timeout, tls=tls,
            )
            if tls is False:
                _log.warning("TLS certificates of %s are NOT verified (ssl=False, "
                             "insecure_skip_verify=True): whoever is on the path can read the "
                             "token and answer in the server's name", cfg.base_url)
        self._transport = transport
        self._hooks = HookDispatch.of(hooks)
        self._hook_objects: tuple[object, ...] = (
            () if hooks is None else tuple(hooks) if isinstance(hooks, list | tuple) else (hooks,)
        )
        self._guard = CloseGuard()
        self._note_limits()
        self._policy = RetryPolicy(max_retries=cfg.max_retries, backoff_initial=backoff_initial,
                                   backoff_max=backoff_max)
        self._sender = Sender(transport, cfg.headers, self._policy, self._guard.sleep,
                              self._hooks)
        self._quota_for_loop = None
        self._redis_quota = None
        self._urls = {}
        self._url_media = UrlMediaCache()
        self._announce_reserve_soon()

    def __repr__(self) -> str:
        cfg: ClientConfig | None = getattr(self, "_config", None)
        if cfg is None:  # a constructor that raised leaves a half-built object behind
            return "RyzeClient(<not configured>)"
        return (
            f"RyzeClient(instance={cfg.instance!r}, base_url={cfg.base_url!r}, "
            f"rate_limit={cfg.rate_limit}/{cfg.rate_period:g}s, token=<redacted>)"
        )

    async def __aenter__(self) -> Self:
        self._check_open()
        await self._announce_reserve()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session; later calls raise ``ClientClosedError``. Idempotent.

        Calls still waiting (for quota, a 429's reset or a retry's backoff) raise
        ``ClientClosedError`` at once, having sent nothing; nothing is sent after this.
        Closing a view (``with_options``) only ends new calls through that view.
        """
        if self._is_view:
            self._view_closed = True
            return
        self._guard.close()
        if self._owns_transport:
            await self._transport.aclose()
        await self._close_shared_quota()

    def for_sender(self, token: str, instance: str) -> RyzeClient:
        """A client with this one's settings (base URL, rate limits, timeouts, region,
        retries, hooks...) for another token and instance: one sender of a campaign's pool.

        Clients on the same server and token share one quota limiter, so two senders of one
        account token share its quota. A ``transport`` given to this client is shared, and
        stays this client's to close; otherwise the new client has its own. Close it.
        """
        secret = Secret(token)
        del token
        clone = RyzeClient(secret.reveal(), instance, **self._options)  # type: ignore[arg-type]
        clone._owns_transport = self._options["transport"] is None
        return clone

    @property
    def instance(self) -> str | None:
        """The default instance calls go to (None: every call must name one)."""
        return self._config.instance

    @property
    def rate_limit(self) -> int | None:
        """Calls per ``rate_period`` (``rate_limit=``); None: no client-side quota."""
        return self._config.rate_limit

    @property
    def rate_period(self) -> float:
        """The quota's period in seconds (``rate_period=``)."""
        return self._config.rate_period

    @property
    def default_region(self) -> str | None:
        """The region national-format numbers are read in (``default_region=`` or
        ``RYZE_DEFAULT_REGION``); None: every number must carry its country code."""
        return self._numbers["default_region"]

    @property
    def number_check(self) -> NumberCheck:
        """``"valid"`` or ``"possible"``: how strictly plain numbers are checked."""
        return self._numbers["number_check"]

    @property
    def hooks(self) -> tuple[object, ...]:
        """The instrumentation hooks this client tells (a campaign tells them its outcomes)."""
        return self._hook_objects

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` was called (on a view: on the view or on its client)."""
        return self._guard.closed or self._view_closed

    # -- the two endpoints ----------------------------------------------------------------------

    async def audio_call(
        self,
        number: str,
        *,
        media: MediaArg | None = None,
        media_url: str | None = None,
        media_base64: str | None = None,
        instance: str | None = None,
        before_send: BeforeSend | None = None,
        on_not_sent: NotSent | None = None,
        max_wait: float | Unset | None = UNSET,
        timeout: float | None = None,  # noqa: ASYNC109 - a call's own bound, as in httpx
    ) -> CallResult:
        """Call ``number`` and play audio when it is answered.

        Give exactly one of ``media`` (bytes, a file path, or a prepared ``Media``),
        ``media_url`` (an http(s) URL, a data URI or base64) or ``media_base64``.
        For many calls with the same audio, build a ``Media`` once and pass it each time.

        ``before_send`` is awaited before every attempt's first byte, once the quota admitted
        that attempt; if it raises, nothing is sent and its exception propagates.
        ``on_not_sent`` is awaited as soon as an attempt is proven refused (a 429) or never sent
        (a retryable ``ConnectionFailedError``) and the client is about to wait and try again,
        before the wait starts; it is not awaited when the client gives up and raises.

        ``max_wait`` (seconds; default: the client's): when the quota cannot admit the call
        within it, ``QuotaTimeoutError`` is raised and nothing is sent, at once when the quota
        already knows the slot comes later. ``timeout`` bounds each attempt (sending and the
        answer); its expiry after sending is an ``OutcomeUnknownError``.
        """
        self._check_open()
        cap = self._config.max_media_bytes
        source = media_source(media, media_url, media_base64, max_bytes=cap, urls=self._url_media)
        if not isinstance(source, Media):  # a file read must not stall every other task
            source = await asyncio.to_thread(Media.from_file, source, max_bytes=cap)
        body = call_body(number, self._numbers, media=source)
        call = self._call("audio", instance, body, before_send, on_not_sent)
        if max_wait is not UNSET or timeout is not None or self._limited:
            self._limit(call, max_wait, timeout)
        return await self._place(call)

    async def fake_call(
        self,
        number: str,
        *,
        duration: int | None = None,
        instance: str | None = None,
        before_send: BeforeSend | None = None,
        on_not_sent: NotSent | None = None,
        max_wait: float | Unset | None = UNSET,
        timeout: float | None = None,  # noqa: ASYNC109 - a call's own bound, as in httpx
    ) -> CallResult:
        """Ring ``number`` for ``duration`` seconds (1 to 60; None: the server's 8), no audio.

        ``before_send``, ``on_not_sent``, ``max_wait`` and ``timeout``: as for ``audio_call``.
        """
        self._check_open()
        body = call_body(number, self._numbers, duration=duration)
        call = self._call("fake", instance, body, before_send, on_not_sent)
        if max_wait is not UNSET or timeout is not None or self._limited:
            self._limit(call, max_wait, timeout)
        return await self._place(call)

    # -- the pipeline ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._guard.closed or self._view_closed:
            raise ClientClosedError("this RyzeClient is closed; create a new one")
