"""``RyzeClient``: validate, wait for quota, send once (plus safe retries), interpret.

One call flows one way through named steps (``_place``): build the body (``_bodies``), admit it
through the quota backend (``_quota``) in its lane and by its deadline (issue 11), send it with
resends of what provably never left (``_retry``, through the ``Transport`` of ``_transports``),
take the answer's rate feedback in, and interpret the answer (``_answers``); a 429 goes round
again after its reset.

Per-request options make views (``with_options``): a view is a shallow copy of its client with
another configuration. It shares the transport (the session), the quota, the hooks and the close
guard, so closing the client ends the views' use too, while closing a view only ends new calls
through that view.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ._answers import RateLimitFields, feedback, interpret, rate_limited_delay
from ._bodies import MediaArg, UrlMediaCache, call_body, media_source
from ._checks import check_settings
from ._closing import CloseGuard
from ._config import ClientConfig, Secret, check_lanes
from ._evidence import annotate
from ._exceptions import ClientClosedError, RyzeError
from ._hooks import CallKind, HookDispatch, RetryScheduled
from ._media import Media
from ._models import CallResult
from ._numbers import NumberCheck, number_options
from ._public import public
from ._quota import Lane, QuotaBackend, QuotaLimiter, observed_wait, shared_limiter
from ._quota.choose import checked_quota_url, connect_shared_quota, redis_quota
from ._retry import CallSender, OutgoingCall, RetryPolicy
from ._tls import tls_setting
from ._transports import RawResponse, Transport

if TYPE_CHECKING:
    from ._quota.redis.quota import RedisQuota
    from ._tls import SslArg

__all__ = ["UNSET", "BeforeSend", "NotSent", "RyzeClient", "Unset"]

_log = logging.getLogger("ryze_async")


class Unset:
    """``max_wait`` not given: the client's own applies (None means "no limit")."""


UNSET = Unset()


#: Awaited before every attempt's first byte, after the quota admitted that attempt.
BeforeSend = Callable[[], Awaitable[None]]
#: Awaited when an attempt was proven refused (429) or never sent, before the client waits to
#: try again; not when it gives up (then the call raises).
NotSent = Callable[[], Awaitable[None]]


@public
class RyzeClient:
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

    _is_view = False
    _root: Self  # a view's client: the one whose quota (and its connections) the view uses
    _view_closed = False  # a view closed: no new calls through it
    _attempt_timeout: float | None = None  # with_options(timeout=): bounds each attempt
    _limited = False  # see _note_limits

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
                https=cfg.base_url.startswith("https:"),
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
        self._sender = CallSender(transport, cfg.headers, self._policy, self._guard.sleep,
                              self._hooks)
        self._quota_for_loop: tuple[asyncio.AbstractEventLoop, QuotaBackend] | None = None
        self._redis_quota: RedisQuota | None = None
        self._urls: dict[tuple[CallKind, str | None], tuple[str, str]] = {}
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
        await self._connect_shared_quota()
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

    def with_options(
        self, *, timeout: float | None = None, max_retries: int | None = None,
        priority: Lane | None = None, max_wait: float | Unset | None = UNSET,
    ) -> Self:
        """A light view of this client with other per-request options; this one is unchanged.

        The view shares the session (transport), the quota and the hooks. ``timeout`` bounds
        each attempt of the view's calls (sending and the answer; its expiry after sending is
        an ``OutcomeUnknownError``); ``max_retries``, ``priority`` and ``max_wait`` replace
        this client's. Closing the view does not close this client; closing this client
        ends the views' use too.
        """
        self._check_open()
        if timeout is not None:
            check_settings(timeout=timeout)
        cfg = self._config
        config = replace(
            cfg,
            max_retries=cfg.max_retries if max_retries is None else max_retries,
            priority=cfg.priority if priority is None else priority,
            max_wait=cfg.max_wait if isinstance(max_wait, Unset) else max_wait,
        )
        check_lanes(config.priority, cfg.interactive_reserve, cfg.rate_limit, config.max_wait)
        view = copy.copy(self)
        view._root = self._root if self._is_view else self
        view._is_view = True
        view._view_closed = False
        view._config = config
        view._policy = replace(self._policy, max_retries=config.max_retries)  # checks it
        view._sender = CallSender(self._transport, cfg.headers, view._policy, self._guard.sleep,
                              self._hooks)
        view._attempt_timeout = self._attempt_timeout if timeout is None else float(timeout)
        view._note_limits()
        return view

    @property
    def priority(self) -> Lane:
        """This client's quota lane: ``"interactive"`` or ``"bulk"``."""
        return self._config.priority

    @property
    def max_retries(self) -> int:
        """How many times a refused (429) or never-sent attempt is sent again."""
        return self._config.max_retries

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
        before the wait starts; it is not awaited when the client gives up and raises. It is
        also awaited when the call is cancelled after ``before_send`` but before its first byte
        left (a slow connection; the default transport tells), before the cancellation goes on.

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

    def _note_limits(self) -> None:
        """Whether calls need ``_limit`` (a lane, a wait or a bound not the defaults): when
        not, the hot path skips it with one attribute test."""
        cfg = self._config
        self._limited = (cfg.priority != "interactive" or cfg.max_wait is not None
                         or self._attempt_timeout is not None)

    def _limit(
        self, call: OutgoingCall, max_wait: float | Unset | None, timeout: float | None
    ) -> None:
        """Give the call its lane, its quota deadline and its attempts' bound."""
        cfg = self._config
        if cfg.priority != "interactive":
            call.lane = cfg.priority
        if isinstance(max_wait, Unset):
            max_wait = cfg.max_wait
        if max_wait is not None:
            check_settings(max_wait=max_wait)
            call.max_wait = max_wait
            call.deadline = asyncio.get_running_loop().time() + max_wait
        if timeout is None:
            timeout = self._attempt_timeout
        if timeout is not None:
            check_settings(timeout=timeout)
            call.timeout = timeout

    async def _admit(self, call: OutgoingCall, quota: QuotaBackend) -> float:
        # The defaults are not passed: a backend that knows no lanes serves the default lane.
        slot = quota.try_acquire() if call.lane is None else quota.try_acquire(lane=call.lane)
        if slot is not None:
            return slot

        def acquiring() -> Awaitable[float]:
            if call.lane is None and call.deadline is None:
                return quota.acquire()
            return quota.acquire(lane=call.lane or "interactive", deadline=call.deadline)

        if self._hooks is None:
            return await self._guard.wait(acquiring())
        return await observed_wait(self._guard.wait, acquiring, self._hooks, call.kind,
                                   call.instance)

    def _call(
        self, kind: CallKind, instance: str | None, body: Sequence[bytes],
        before_send: BeforeSend | None, on_not_sent: NotSent | None,
    ) -> OutgoingCall:
        key = (kind, instance)
        known = self._urls.get(key)
        if known is None:
            if len(self._urls) >= 64:  # many instance names: a bounded cache
                self._urls.clear()
            name = self._config.instance if instance is None else instance
            known = self._urls[key] = (self._config.call_url(kind, name), str(name))
        return OutgoingCall(kind, known[1], known[0], body[0] if len(body) == 1 else body,
                    before_send, on_not_sent)

    def _quota(self) -> QuotaBackend | None:
        if self._is_view:  # a view uses its client's quota: one per client and loop, closed once
            return self._root._quota()
        cached = self._quota_for_loop
        if cached is not None and cached[0] is asyncio.get_running_loop():
            return cached[1]
        cfg = self._config
        if cfg.rate_limit is None:
            return None
        limiter: QuotaBackend
        if self._quota_url is not None:  # one quota for every process on the token: Redis
            # Its connections belong to this loop: another loop gets its own (see aclose).
            limiter = self._redis_quota = redis_quota(
                self._quota_url, token=cfg.token, server=cfg.base_url, limit=cfg.rate_limit,
                period=cfg.rate_period, margin=cfg.rate_margin, reserve=cfg.interactive_reserve)
        else:
            limiter = shared_limiter(cfg.token, cfg.rate_limit, cfg.rate_period,
                                     cfg.rate_margin, server=cfg.base_url, learn_first=True,
                                     reserve=cfg.interactive_reserve, user=self)
        self._quota_for_loop = (asyncio.get_running_loop(), limiter)
        return limiter

    def _announce_reserve_soon(self) -> None:
        """Built in a running loop with a shared quota: send this client's reserve to Redis
        now, so no other process's bulk call takes its slots before its first call. Without a
        running loop it waits for ``async with`` or the first call (see README, Bots)."""
        if self._quota_url is None or not self._config.interactive_reserve:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        announce_soon = getattr(self._quota(), "announce_soon", None)
        if announce_soon is not None:
            announce_soon()

    async def _connect_shared_quota(self) -> None:
        """With a shared quota, connect once now: a TLS certificate, user or password the Redis
        refuses is an InvalidRequestError here, before any call (see `connect_shared_quota`)."""
        if self._quota_url is not None:
            await connect_shared_quota(self._quota(), self._quota_url)

    async def _announce_reserve(self) -> None:
        """With a shared quota, put this client's interactive reserve in force for every
        process on the token now, not only from its first call."""
        if self._quota_url is not None and self._config.interactive_reserve:
            announce = getattr(self._quota(), "announce", None)  # a view's is its client's
            if announce is not None:
                await announce()

    async def _close_shared_quota(self) -> None:
        """Close the Redis quota's connections, if this loop opened them (another loop's
        cannot be closed from here and go with their loop); leave the loop's shared limiter,
        so this client's settings no longer hold its other clients back."""
        quota, self._redis_quota = self._redis_quota, None
        cached = self._quota_for_loop
        if cached is None or cached[0] is not asyncio.get_running_loop():
            return
        if isinstance(cached[1], QuotaLimiter):
            cached[1].leave(self)
        if quota is not None:
            await quota.aclose()

    async def _place(self, call: OutgoingCall) -> CallResult:
        """Admit and send the call until it is answered; a 429 goes round again."""
        quota = self._quota()
        refused = 0
        try:
            while True:
                if quota is None:  # no slot to hold: no frame of its own (it costs every call)
                    self._guard.check()
                    response, rate, reset_after = self._take_in(
                        call, await self._sender.send(call), None, None)
                else:
                    response, rate, reset_after = await self._admitted_attempt(call, quota)
                if response.status != 429 or refused >= self._config.max_retries:
                    return interpret(response, rate, self._config)
                refused += 1
                await self._after_refusal(call, quota, response, reset_after)
        except RyzeError as exc:
            annotate(exc, call)  # the call's own facts: kind, instance, when it was sent
            raise

    async def _admitted_attempt(
        self, call: OutgoingCall, quota: QuotaBackend
    ) -> tuple[RawResponse, RateLimitFields | None, float | None]:
        """Admit the call, send it (resending what never left), take its feedback in."""
        held = _Held(self, call, quota, await self._admit(call, quota))
        call.reached = False
        try:
            self._guard.check()
            response = await self._sender.send(call, held)
            return self._take_in(call, response, quota, held.slot)
        except BaseException:
            if not call.reached and held.slot is not None:  # the slot is unused
                quota.release(held.slot)
            raise
        finally:
            quota.settle()  # a fresh backend's first answer releases the burst

    def _take_in(
        self, call: OutgoingCall, response: RawResponse, quota: QuotaBackend | None,
        slot: float | None,
    ) -> tuple[RawResponse, RateLimitFields | None, float | None]:
        """The answer with its rate-limit fields and seconds to their reset, fed to the quota."""
        rate, reset_after = feedback(response, quota, slot)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("POST %s -> %d (remaining %s)", self._config.redact(call.url),
                       response.status, rate["remaining"] if rate else "?")
        return response, rate, reset_after

    async def _after_refusal(
        self, call: OutgoingCall, quota: QuotaBackend | None, response: RawResponse,
        reset_after: float | None,
    ) -> None:
        """A 429 refused the call: report it, then wait out its reset (for every caller)."""
        delay = rate_limited_delay(response, reset_after, self._config.rate_period)
        _log.warning("429 rate limited; sending again in %.2f s", delay)
        if self._hooks is not None:
            self._hooks.emit("on_retry_scheduled", RetryScheduled(
                call.kind, call.instance, call.attempts + 1, delay, "rate_limited"))
        if call.on_not_sent is not None:  # a 429 was refused: provably not placed
            await call.on_not_sent()
        if quota is not None:
            quota.hold_until(delay)  # the next acquire waits it out, for every caller
        else:
            await self._guard.sleep(delay)


class _Held:
    """The quota slot one admitted attempt holds until its request leaves (a `SlotGate`): a
    slot's time is when the request leaves, so a late one is moved to now or taken again."""

    __slots__ = ("_call", "_client", "_quota", "slot")

    def __init__(
        self, client: RyzeClient, call: OutgoingCall, quota: QuotaBackend, slot: float
    ) -> None:
        self._client, self._call, self._quota = client, call, quota
        self.slot: float | None = slot  # None: given back, not yet taken again

    def late(self) -> bool:
        return self.slot is None or self._quota.late(self.slot)

    async def readmit(self) -> bool:
        if self.slot is None:
            return False
        lane = self._call.lane
        slot = (await self._quota.readmit(self.slot) if lane is None
                else await self._quota.readmit(self.slot, lane=lane))
        self.slot = slot
        return slot is not None

    async def wait(self) -> None:
        self.slot = await self._client._admit(self._call, self._quota)

    def left(self) -> None:
        if self.slot is not None:
            self.slot = self._quota.sent(self.slot)
