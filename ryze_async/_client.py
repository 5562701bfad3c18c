"""``RyzeClient``: validate, wait for quota, send once (plus safe retries), interpret."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from pydantic import ValidationError

from ._config import ClientConfig
from ._errors import (
    ClientClosedError,
    InvalidRequestError,
    OutcomeUnknownError,
    error_for_status,
)
from ._limiter import QuotaLimiter, shared_limiter
from ._media import Media
from ._models import (
    AudioCallBody,
    CallResult,
    FakeCallBody,
    RateLimitInfo,
    parse_rate_limit,
    seconds_until_reset,
)
from ._retry import RetryPolicy
from ._transport import RawResponse, Transport

__all__ = ["BeforeSend", "RyzeClient"]

_log = logging.getLogger("ryze_async")

#: Awaited once, after the quota admits the call and right before the first byte is sent.
BeforeSend = Callable[[], Awaitable[None]]
MediaArg = bytes | bytearray | memoryview | str | os.PathLike[str] | Media
_CallKind = Literal["audio", "fake"]
_BodyT = TypeVar("_BodyT", AudioCallBody, FakeCallBody)


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
    ) -> CallResult:
        """Call ``number`` and play audio when it is answered.

        Give exactly one of ``media`` (bytes, a file path, or a prepared ``Media``),
        ``media_url`` (an http(s) URL, a data URI or base64) or ``media_base64``.
        For many calls with the same audio, build a ``Media`` once and pass it each time.
        """
        self._check_open()
        prepared = await self._media(media, media_url, media_base64)
        body = self._validated(AudioCallBody, {"number": number, "media": prepared})
        return await self._place("audio", instance, body.to_wire(), before_send)

    async def fake_call(
        self,
        number: str,
        *,
        duration: int | None = None,
        instance: str | None = None,
        before_send: BeforeSend | None = None,
    ) -> CallResult:
        """Ring ``number`` for ``duration`` seconds (1 to 60; None: the server's 8), no audio."""
        self._check_open()
        body = self._validated(FakeCallBody, {"number": number, "duration": duration})
        return await self._place("fake", instance, body.to_wire(), before_send)

    # -- the pipeline ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("this RyzeClient is closed; create a new one")

    async def _media(
        self, media: MediaArg | None, media_url: str | None, media_base64: str | None
    ) -> Media:
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
            return Media.from_url(media_url, max_bytes=cap)
        if media_base64 is not None:
            return Media.from_base64(media_base64, max_bytes=cap)
        if isinstance(media, Media):
            return media
        if isinstance(media, bytes | bytearray | memoryview):
            return Media.from_bytes(media, max_bytes=cap)
        if isinstance(media, str | os.PathLike):
            # A file read must not stall every other task on the loop.
            return await asyncio.to_thread(Media.from_file, media, max_bytes=cap)
        raise InvalidRequestError(
            f"media must be bytes, a file path or a Media, not {type(media).__name__}",
            field="media",
        )

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
        self, kind: _CallKind, instance: str | None, body: bytes, before_send: BeforeSend | None
    ) -> CallResult:
        url = self._url(kind, instance)
        limiter = self._limiter()
        headers = self._config.headers

        async def send() -> RawResponse:
            return await self._transport.send(url, headers, body)

        rate_limited = 0
        while True:
            if limiter is not None:
                await limiter.acquire()
            if before_send is not None:
                hook, before_send = before_send, None
                await hook()
            started = time.perf_counter()
            response = await self._retry.run(send)
            info = parse_rate_limit(response.headers)
            reset_after = seconds_until_reset(response.headers, info.reset if info else None)
            if limiter is not None and info is not None:
                limiter.observe(limit=info.limit, remaining=info.remaining, reset_after=reset_after)
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug(
                    "POST %s -> %d in %.1f ms (remaining %s)", self._config.redact(url),
                    response.status, (time.perf_counter() - started) * 1e3,
                    info.remaining if info else "?",
                )
            if response.status != 429 or rate_limited >= self._config.max_retries:
                return self._interpret(response, info)
            rate_limited += 1
            # A reset in the wrong unit (milliseconds, say) must not park the caller for days.
            ceiling = 2 * self._config.rate_period + 5
            delay = ceiling if reset_after is None else min(reset_after, ceiling)
            _log.warning("429 rate limited; sending again in %.2f s (the server's reset)", delay)
            if limiter is not None:
                limiter.hold_until(delay)
            else:
                await asyncio.sleep(delay)

    def _interpret(self, response: RawResponse, info: RateLimitInfo | None) -> CallResult:
        status = response.status
        data = _json_object(response.body)
        if 200 <= status < 300:
            if data is None or data.get("success") is not True:
                raise OutcomeUnknownError(
                    f"HTTP {status} but the body is not a success report "
                    f"({self._describe(response)}); the call may have been placed"
                )
            try:
                return CallResult.model_validate({**data, "status": status, "rate_limit": info})
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
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
