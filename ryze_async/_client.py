"""``RyzeClient``: validate, wait for quota, send once (plus safe retries), interpret."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from pydantic import ValidationError

from ._closing import CloseGuard
from ._config import ClientConfig, Secret
from ._exceptions import (
    ClientClosedError,
    ConnectionFailedError,
    InvalidRequestError,
    OutcomeUnknownError,
    RyzeError,
    error_for_status,
)
from ._limiter import QuotaLimiter, shared_limiter
from ._media import Media
from ._models import (
    AudioCallBody,
    CallResult,
    FakeCallBody,
    RateLimitFields,
    RateLimitInfo,
    audio_wire_parts,
    rate_limit_fields,
    seconds_until_reset,
)
from ._numbers import NumberCheck, normalize_number, number_options
from ._retry import RetryPolicy, retry_after_seconds
from ._transport import RawResponse, Transport

__all__ = ["BeforeSend", "NotSent", "RyzeClient"]

_log = logging.getLogger("ryze_async")

# Optional: orjson parses an answer about 7x faster than json, a few microseconds of every call.
_orjson_loads: Callable[[bytes], Any] | None
try:
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - tests force this path by setting it to None
    _orjson_loads = None
# A JSON number of 19 digits or more may be outside 64 bits. A number token follows ":", "," or
# "[" (and maybe blanks and "-"), so digits inside strings (ids, phone numbers) rarely match.
_LONG_INTEGER = re.compile(rb"[:,\[]\s*-?[0-9]{19}")

#: Awaited before every attempt's first byte, after the quota admitted that attempt.
BeforeSend = Callable[[], Awaitable[None]]
#: Awaited when an attempt was proven refused (429) or never sent, before the client waits to
#: try again; not when it gives up (then the call raises).
NotSent = Callable[[], Awaitable[None]]
MediaArg = bytes | bytearray | memoryview | str | os.PathLike[str] | Media
_CallKind = Literal["audio", "fake"]
_BodyT = TypeVar("_BodyT", AudioCallBody, FakeCallBody)
_URL_MEDIA_CACHE_CHARS = 2048
_EXCERPT_CHARS = 200


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
    ) -> None:
        # The raw token leaves this frame's locals at once: a traceback of any error raised
        # below (a refused setting) must not carry it to an error tracker.
        secret = Secret(token)
        del token
        self._config = ClientConfig.build(
            token=secret, instance=instance, base_url=base_url, rate_limit=rate_limit,
            rate_period=rate_period, rate_margin=rate_margin, max_retries=max_retries,
            timeout=timeout, connect_timeout=connect_timeout,
            keepalive_timeout=keepalive_timeout, allow_http=allow_http,
            max_media_bytes=max_media_bytes,
        )
        cfg = self._config
        region = default_region if default_region is not None else os.environ.get(
            "RYZE_DEFAULT_REGION", "").strip() or None
        self._numbers = number_options(
            allow_lid=allow_lid, default_region=region, number_check=number_check
        )
        self._transport = Transport(
            timeout=cfg.timeout, connect_timeout=cfg.connect_timeout,
            keepalive_timeout=cfg.keepalive_timeout,
        )
        self._retry = RetryPolicy(
            max_retries=cfg.max_retries, backoff_initial=backoff_initial, backoff_max=backoff_max
        )
        self._limiter_for_loop: tuple[asyncio.AbstractEventLoop, QuotaLimiter] | None = None
        self._urls: dict[tuple[str, str], str] = {}
        self._last_url_media: tuple[str, Media] | None = None
        self._guard = CloseGuard()

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
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session; later calls raise ``ClientClosedError``. Idempotent.

        Calls still waiting (for quota, a 429's reset or a retry's backoff) raise
        ``ClientClosedError`` at once, having sent nothing; nothing is sent after this.
        """
        self._guard.close()
        await self._transport.aclose()

    @property
    def instance(self) -> str | None:
        """The default instance calls go to (None: every call must name one)."""
        return self._config.instance

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
    def closed(self) -> bool:
        """True once ``aclose()`` was called."""
        return self._guard.closed

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
        """
        self._check_open()
        source = self._media_source(media, media_url, media_base64)
        if isinstance(source, Media):
            prepared = source
        else:  # a file read must not stall every other task on the loop
            cap = self._config.max_media_bytes
            prepared = await asyncio.to_thread(Media.from_file, source, max_bytes=cap)
        if type(number) is str:
            # For an exact str, AudioCallBody's whole validation is normalize_number: run alone,
            # it skips a pydantic round trip that costs more than building the rest of the body.
            parts = audio_wire_parts(normalize_number(number, **self._numbers), prepared)
        else:  # the model refuses it, with its usual message
            body = self._validated(AudioCallBody, {"number": number, "media": prepared})
            parts = body.wire_parts()
        return await self._place("audio", instance, parts, before_send, on_not_sent)

    async def fake_call(
        self,
        number: str,
        *,
        duration: int | None = None,
        instance: str | None = None,
        before_send: BeforeSend | None = None,
        on_not_sent: NotSent | None = None,
    ) -> CallResult:
        """Ring ``number`` for ``duration`` seconds (1 to 60; None: the server's 8), no audio.

        ``before_send`` and ``on_not_sent``: as for ``audio_call``.
        """
        self._check_open()
        body = self._validated(FakeCallBody, {"number": number, "duration": duration})
        return await self._place("fake", instance, body.to_wire(), before_send, on_not_sent)

    # -- the pipeline ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._guard.closed:
            raise ClientClosedError("this RyzeClient is closed; create a new one")

    def _media_source(
        self, media: MediaArg | None, media_url: str | None, media_base64: str | None
    ) -> Media | str | os.PathLike[str]:
        """The call's ``Media``, or the path of a file still to be read."""
        if isinstance(media, Media) and media_url is None and media_base64 is None:
            return media  # the campaign path: already checked and encoded
        given = [name for name, value in (("media", media), ("media_url", media_url),
                                          ("media_base64", media_base64)) if value is not None]
        if len(given) != 1:
            which = ", ".join(given) if given else "none"
            raise InvalidRequestError(
                f"give exactly one of media, media_url or media_base64 (got {which})",
                field="media",
            )
        cap = self._config.max_media_bytes
        if media_url is not None:
            return self._url_media(media_url)
        if media_base64 is not None:
            return Media.from_base64(media_base64, max_bytes=cap)
        if isinstance(media, bytes | bytearray | memoryview):
            return Media.from_bytes(media, max_bytes=cap)
        if isinstance(media, str | os.PathLike):
            return media
        raise InvalidRequestError(
            f"media must be bytes, a file path or a Media, not {type(media).__name__}",
            field="media",
        )

    def _url_media(self, url: str) -> Media:
        # Media is immutable, so the same media_url call after call (the simple way to run a
        # campaign) reuses the last one instead of checking, hashing and encoding it again.
        # One entry, and short strings only: a big data: URI is not kept alive by the client.
        last = self._last_url_media
        if last is not None and type(url) is str and last[0] == url:
            return last[1]
        media = Media.from_url(url, max_bytes=self._config.max_media_bytes)
        if type(url) is str and len(url) <= _URL_MEDIA_CACHE_CHARS:
            self._last_url_media = (url, media)
        return media

    def _validated(self, model: type[_BodyT], data: dict[str, Any]) -> _BodyT:
        try:
            return model.model_validate(data, context=dict(self._numbers))
        except ValidationError as exc:
            first = exc.errors()[0]
            cause = (first.get("ctx") or {}).get("error")
            if isinstance(cause, InvalidRequestError):
                raise cause from None
            field = ".".join(str(part) for part in first["loc"]) or None
            raise InvalidRequestError(f"{field}: {first['msg']}", field=field) from None

    def _url(self, kind: _CallKind, instance: str | None) -> str:
        name = self._config.instance if instance is None else instance
        key = (kind, "" if name is None else name)
        url = self._urls.get(key)
        if url is None:
            url = self._config.call_url(kind, name)
            self._urls[key] = url
        return url

    def _limiter(self) -> QuotaLimiter | None:
        cfg = self._config
        if cfg.rate_limit is None:
            return None
        loop = asyncio.get_running_loop()
        cached = self._limiter_for_loop
        if cached is None or cached[0] is not loop:
            limiter = shared_limiter(
                cfg.token, cfg.rate_limit, cfg.rate_period, cfg.rate_margin,
                server=cfg.base_url, learn_first=True,
            )
            cached = self._limiter_for_loop = (loop, limiter)
        return cached[1]

    async def _place(
        self,
        kind: _CallKind,
        instance: str | None,
        body: bytes | Sequence[bytes],
        before_send: BeforeSend | None,
        on_not_sent: NotSent | None,
    ) -> CallResult:
        url = self._url(kind, instance)
        limiter = self._limiter()
        rate_limited = 0
        while True:
            admitted = None
            if limiter is not None:
                admitted = await self._guard.wait(limiter.acquire())
            try:
                started = time.perf_counter()
                response = await self._attempt(url, body, before_send, on_not_sent)
                rate, reset_after = self._take_in(response, limiter, admitted, started, url)
            finally:
                if limiter is not None:  # a fresh limiter's first answer releases the burst
                    limiter.settle()
            if response.status != 429 or rate_limited >= self._config.max_retries:
                return self._answer(response, rate)
            rate_limited += 1
            delay = self._rate_limited_delay(response, reset_after)
            _log.warning("429 rate limited; sending again in %.2f s", delay)
            if on_not_sent is not None:  # a 429 was refused: provably not placed
                await on_not_sent()
            if limiter is not None:
                limiter.hold_until(delay)  # the next acquire() waits it out, for every caller
            else:
                await self._guard.sleep(delay)

    async def _attempt(
        self,
        url: str,
        body: bytes | Sequence[bytes],
        before_send: BeforeSend | None,
        on_not_sent: NotSent | None,
    ) -> RawResponse:
        """One admitted attempt: the first send, plus resends of what provably never left."""
        self._guard.check()
        headers = self._config.headers
        transport = self._transport
        if before_send is not None:
            await before_send()
        try:
            # The first attempt is sent directly; the retry policy only sees a failure.
            return await transport.send(url, headers, body)
        except ConnectionFailedError as exc:
            return await self._retry.resend(
                exc, functools.partial(transport.send, url, headers, body),
                before_attempt=before_send, not_sent=on_not_sent, sleep=self._guard.sleep,
            )

    def _take_in(
        self,
        response: RawResponse,
        limiter: QuotaLimiter | None,
        admitted: float | None,
        started: float,
        url: str,
    ) -> tuple[RateLimitFields | None, float | None]:
        """The answer's rate-limit fields and seconds to their reset, fed to the limiter."""
        try:
            rate = rate_limit_fields(response.headers)
            # Only the limiter and a 429 need the reset; most answers skip the Date arithmetic.
            reset_after = (
                seconds_until_reset(response.headers, rate["reset"] if rate else None)
                if response.status == 429 or (limiter is not None and rate is not None)
                else None
            )
            if limiter is not None and rate is not None:
                limiter.observe(
                    limit=rate["limit"], remaining=rate["remaining"], reset_after=reset_after,
                    admitted_at=admitted,
                )
        except Exception as exc:
            raise self._unreadable(response, exc) from exc
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "POST %s -> %d in %.1f ms (remaining %s)", self._config.redact(url),
                response.status, (time.perf_counter() - started) * 1e3,
                rate["remaining"] if rate else "?",
            )
        return rate, reset_after

    def _rate_limited_delay(self, response: RawResponse, reset_after: float | None) -> float:
        """A 429's wait: its Retry-After, else its reset, else one period."""
        period = self._config.rate_period
        delay = retry_after_seconds(response.headers)
        if delay is None:
            delay = period if reset_after is None else reset_after
        # A reset in the wrong unit (milliseconds, say) must not park the caller for days.
        return min(max(delay, 0.0), 2 * period + 5)

    def _answer(self, response: RawResponse, rate: RateLimitFields | None) -> CallResult:
        try:
            return self._interpret(response, rate)
        except RyzeError:
            raise
        except Exception as exc:
            raise self._unreadable(response, exc) from exc

    @staticmethod
    def _unreadable(response: RawResponse, exc: Exception) -> OutcomeUnknownError:
        # The request reached the server: a fault in reading its answer must not escape as
        # something a caller could take for "not placed".
        return OutcomeUnknownError(
            f"HTTP {response.status}: the answer could not be read "
            f"({type(exc).__name__}); the call may have been placed"
        )

    def _interpret(self, response: RawResponse, rate: RateLimitFields | None) -> CallResult:
        status = response.status
        data = _json_object(response.body)
        if 200 <= status < 300:
            if data is None or data.get("success") is not True:
                raise OutcomeUnknownError(
                    f"the body is not a success report ({self._describe(response)}); "
                    "the call may have been placed",
                    status=status,
                )
            try:
                # data is this answer's own fresh dict: completed in place, not copied, and
                # validated once with the rate limit inside.
                self._redact_fields(data)
                data["status"] = status
                data["rate_limit"] = rate
                return CallResult.model_validate(data)
            except ValidationError:
                raise OutcomeUnknownError(
                    f"a malformed success report ({self._describe(response)}); "
                    "the call may have been placed",
                    status=status,
                ) from None
        error = self._error(response, data, rate)
        del data  # what the server said stays out of the traceback's locals
        raise error

    def _redact_fields(self, data: dict[str, Any]) -> None:
        # A server that echoes the token (in its message, say) must not put it in a CallResult.
        redact = self._config.redact
        for key in ("message", "callId", "number"):
            value = data.get(key)
            if type(value) is str:
                data[key] = redact(value)

    def _error(
        self, response: RawResponse, data: dict[str, Any] | None, rate: RateLimitFields | None
    ) -> RyzeError:
        """The error for an error status: only RyzeAPI's envelope can say "not placed"."""
        status = response.status
        error = data.get("error") if data is not None and data.get("success") is False else None
        api_message = error.get("message") if isinstance(error, dict) else None
        if isinstance(api_message, str):
            message = self._config.redact(api_message)
        elif 300 <= status < 400:
            location = self._config.secret.excerpt(response.headers.get("Location", "?"), 200)
            message = f"redirect to {location} not followed (the token stays with the base URL)"
        else:
            message = self._describe(response)
        info = None if rate is None else RateLimitInfo.model_validate(rate)
        reset_at = info.reset if info is not None else None
        return error_for_status(
            status, message, rate_limit=info, from_api=isinstance(api_message, str),
            reset_at=reset_at,
        )

    def _describe(self, response: RawResponse) -> str:
        content_type = self._config.redact(response.headers.get("Content-Type", "no content type"))
        # The whole (capped) body is redacted before it is cut: a cut first could leave a
        # prefix of the token that no longer matches it.
        text = response.body.decode("utf-8", "replace").strip()
        excerpt = self._config.secret.excerpt(text, _EXCERPT_CHARS)
        return f"{content_type[:100]}, {len(response.body)} bytes: {excerpt}"


def _json_object(body: bytes) -> dict[str, Any] | None:
    data: Any
    # orjson refuses what json accepts (NaN, Infinity, a BOM, UTF-16, lone surrogates) and reads
    # integers beyond 64 bits as floats: json has the last word on those, so an answer reads
    # exactly as it does without orjson.
    if _orjson_loads is not None and _LONG_INTEGER.search(body) is None:
        try:
            data = _orjson_loads(body)
        except ValueError:
            pass
        else:
            return data if isinstance(data, dict) else None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
