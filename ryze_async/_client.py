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

from ._config import ClientConfig
from ._errors import (
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
from ._numbers import normalize_number
from ._retry import RetryPolicy
from ._transport import RawResponse, Transport

__all__ = ["BeforeSend", "RyzeClient"]

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

#: Awaited once, after the quota admits the call and right before the first byte is sent.
BeforeSend = Callable[[], Awaitable[None]]
MediaArg = bytes | bytearray | memoryview | str | os.PathLike[str] | Media
_CallKind = Literal["audio", "fake"]
_BodyT = TypeVar("_BodyT", AudioCallBody, FakeCallBody)
_URL_MEDIA_CACHE_CHARS = 2048


class RyzeClient:
    """Async client for RyzeAPI's call endpoints. Use ``async with`` or ``await aclose()``.

    ``token``, ``instance`` and ``base_url`` fall back to ``RYZE_TOKEN``, ``RYZE_INSTANCE`` and
    ``RYZE_BASE_URL``. Every client on the same token in the same event loop shares one quota
    limiter of ``rate_limit`` requests per ``rate_period`` seconds (``rate_limit=None`` turns the
    client-side quota off: only for a server you run yourself). Only failures that provably sent
    nothing are retried (``max_retries`` times, exponential backoff with jitter); a 429 waits for
    the server's reset and is sent again up to ``max_retries`` times. ``timeout`` bounds each
    attempt; connecting alone is bounded by ``connect_timeout`` (default: a third of ``timeout``,
    at most 10 s).
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
        keepalive_timeout: float = 1.0,
        allow_http: bool = False,
        max_media_bytes: int = 16 * 1024 * 1024,
        allow_lid: bool = False,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
    ) -> None:
        self._config = ClientConfig.build(
            token=token, instance=instance, base_url=base_url, rate_limit=rate_limit,
            rate_period=rate_period, rate_margin=rate_margin, max_retries=max_retries,
            timeout=timeout, connect_timeout=connect_timeout,
            keepalive_timeout=keepalive_timeout, allow_http=allow_http,
            max_media_bytes=max_media_bytes,
        )
        cfg = self._config
        self._allow_lid = allow_lid
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
        self._closed = False

    def __repr__(self) -> str:
        cfg = self._config
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
        """Close the HTTP session; later calls raise ``ClientClosedError``. Idempotent."""
        self._closed = True
        await self._transport.aclose()

    @property
    def instance(self) -> str | None:
        """The default instance calls go to (None: every call must name one)."""
        return self._config.instance

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` was called."""
        return self._closed

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
        on_not_sent: BeforeSend | None = None,
    ) -> CallResult:
        """Call ``number`` and play audio when it is answered.

        Give exactly one of ``media`` (bytes, a file path, or a prepared ``Media``),
        ``media_url`` (an http(s) URL, a data URI or base64) or ``media_base64``.
        For many calls with the same audio, build a ``Media`` once and pass it each time.
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
            parts = audio_wire_parts(normalize_number(number, allow_lid=self._allow_lid), prepared)
        else:  # the model refuses it, with its usual message
            body = self._validated(AudioCallBody, {"number": number, "media": prepared})
            parts = body.wire_parts()
        return await self._place("audio", instance, parts, before_send)

    async def fake_call(
        self,
        number: str,
        *,
        duration: int | None = None,
        instance: str | None = None,
        before_send: BeforeSend | None = None,
        on_not_sent: BeforeSend | None = None,
    ) -> CallResult:
        """Ring ``number`` for ``duration`` seconds (1 to 60; None: the server's 8), no audio."""
        self._check_open()
        body = self._validated(FakeCallBody, {"number": number, "duration": duration})
        return await self._place("fake", instance, body.to_wire(), before_send)

    # -- the pipeline ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
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
            return model.model_validate(data, context={"allow_lid": self._allow_lid})
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
            limiter = shared_limiter(cfg.token, cfg.rate_limit, cfg.rate_period, cfg.rate_margin)
            cached = self._limiter_for_loop = (loop, limiter)
        return cached[1]

    async def _place(
        self,
        kind: _CallKind,
        instance: str | None,
        body: bytes | Sequence[bytes],
        before_send: BeforeSend | None,
    ) -> CallResult:
        url = self._url(kind, instance)
        limiter = self._limiter()
        headers = self._config.headers
        transport = self._transport

        rate_limited = 0
        while True:
            if limiter is not None:
                await limiter.acquire()
            if before_send is not None:
                hook, before_send = before_send, None
                await hook()
            started = time.perf_counter()
            try:
                # The first attempt is sent directly; the retry policy only sees a failure.
                response = await transport.send(url, headers, body)
            except ConnectionFailedError as exc:
                response = await self._retry.resend(
                    exc, functools.partial(transport.send, url, headers, body)
                )
            try:
                rate = rate_limit_fields(response.headers)
                status = response.status
                # Only the limiter and a 429 need the reset; most answers skip the Date arithmetic.
                reset_after = (
                    seconds_until_reset(response.headers, rate["reset"] if rate else None)
                    if status == 429 or (limiter is not None and rate is not None)
                    else None
                )
                if limiter is not None and rate is not None:
                    limiter.observe(
                        limit=rate["limit"], remaining=rate["remaining"], reset_after=reset_after
                    )
                if _log.isEnabledFor(logging.DEBUG):
                    _log.debug(
                        "POST %s -> %d in %.1f ms (remaining %s)", self._config.redact(url),
                        status, (time.perf_counter() - started) * 1e3,
                        rate["remaining"] if rate else "?",
                    )
                if status != 429 or rate_limited >= self._config.max_retries:
                    return self._interpret(response, rate)
            except RyzeError:
                raise
            except Exception as exc:
                # The request reached the server: a fault in reading its answer must not
                # escape as something a caller could take for "not placed".
                raise OutcomeUnknownError(
                    f"HTTP {response.status}: the answer could not be read "
                    f"({type(exc).__name__}); the call may have been placed"
                ) from exc
            rate_limited += 1
            # A reset in the wrong unit (milliseconds, say) must not park the caller for days.
            ceiling = 2 * self._config.rate_period + 5
            delay = ceiling if reset_after is None else min(reset_after, ceiling)
            _log.warning("429 rate limited; sending again in %.2f s (the server's reset)", delay)
            if limiter is not None:
                limiter.hold_until(delay)
            else:
                await asyncio.sleep(delay)

    def _interpret(self, response: RawResponse, rate: RateLimitFields | None) -> CallResult:
        status = response.status
        data = _json_object(response.body)
        if 200 <= status < 300:
            if data is None or data.get("success") is not True:
                raise OutcomeUnknownError(
                    f"HTTP {status} but the body is not a success report "
                    f"({self._describe(response)}); the call may have been placed"
                )
            try:
                # data is this answer's own fresh dict: completed in place, not copied, and
                # validated once with the rate limit inside.
                data["status"] = status
                data["rate_limit"] = rate
                return CallResult.model_validate(data)
            except ValidationError:
                raise OutcomeUnknownError(
                    f"HTTP {status} with a malformed success report ({self._describe(response)}); "
                    "the call may have been placed"
                ) from None
        error = data.get("error") if data is not None else None
        api_message = error.get("message") if isinstance(error, dict) else None
        from_api = isinstance(api_message, str)
        if isinstance(api_message, str):
            message = self._config.redact(api_message)
        elif 300 <= status < 400:
            location = self._config.redact(response.headers.get("Location", "?"))
            message = f"redirect to {location} not followed (the token stays with the base URL)"
        else:
            message = self._describe(response)
        info = None if rate is None else RateLimitInfo.model_validate(rate)
        reset_at = info.reset if info is not None else None
        raise error_for_status(
            status, message, rate_limit=info, from_api=from_api, reset_at=reset_at
        )

    def _describe(self, response: RawResponse) -> str:
        content_type = response.headers.get("Content-Type", "no content type")
        excerpt = response.body[:200].decode("utf-8", "replace").strip()
        return self._config.redact(
            f"{content_type}, {len(response.body)} bytes: {excerpt!r}"
        )


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
