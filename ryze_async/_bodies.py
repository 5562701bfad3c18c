"""Request bodies: one builder for both endpoints, and the call's media resolved from its arguments.

The body is written by hand from parts that are already checked: the number through
``normalize_number`` (which *is* the number's whole validation), the media member pre-encoded
once per ``Media``. Pydantic (the body models below) runs only where validation is the point: an
argument of the wrong type or out of range, to raise its usual ``InvalidRequestError``.
"""

from __future__ import annotations

import os
from json.encoder import encode_basestring_ascii
from typing import Any, TypeGuard

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from ._exceptions import InvalidRequestError
from ._media import Media
from ._numbers import NumberOptions, normalize_number

__all__ = [
    "AudioCallBody", "FakeCallBody", "MediaArg", "UrlMediaCache", "call_body", "media_source",
]

MediaArg = bytes | bytearray | memoryview | str | os.PathLike[str] | Media
_URL_MEDIA_CACHE_CHARS = 2048


class _RequestModel(BaseModel):
    # Strict: a typo'd or extra key is a bug on our side, never something to send. Built on
    # first use (defer_build): only an argument the fast path refuses is validated here, so a
    # campaign of plain numbers never pays for the schema. No attribute docstrings: pydantic
    # reads them from the source at class creation, and these private models have no schema.
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True, defer_build=True,
    )


class _CallBody(_RequestModel):
    number: str
    """Destination, normalised: E.164 digits without ``+``, or a personal JID."""

    @field_validator("number")
    @classmethod
    def _normalised(cls, value: str, info: ValidationInfo) -> str:
        context = info.context or {}
        return normalize_number(
            value, allow_lid=bool(context.get("allow_lid")),
            default_region=context.get("default_region"),
            number_check=context.get("number_check", "valid"),
        )


class AudioCallBody(_CallBody):
    """Body of ``POST /api/call/audio/{instance}``."""

    media: Media
    """Exactly one media source, already validated and encoded."""


class FakeCallBody(_CallBody):
    """Body of ``POST /api/call/fake/{instance}``."""

    duration: int | None = Field(default=None, ge=1, le=60)
    """Seconds the phone rings, 1 to 60; omitted means the server's default (8)."""


def call_body(
    number: object, options: NumberOptions, *, media: Media | None = None,
    duration: object = None,
) -> tuple[bytes, ...]:
    """The JSON body of an audio call (``media``) or a fake call, as parts sent in order.

    An audio body is three parts with the shared media member untouched in the middle: sent
    part by part, a multi-MiB member is never copied into a per-call buffer.
    """
    if type(number) is str and _plain_duration(duration):
        normalized = normalize_number(number, **options)
    else:  # the model refuses it, with its usual message (or accepts a subclass, converted)
        normalized, duration = _validated(number, options, media, duration)
    # What json.dumps(number) returns for a str (it calls exactly this), minus its dispatch.
    head = b'{"number":' + encode_basestring_ascii(normalized).encode()
    if media is not None:
        return head + b",", media.wire_fragment, b"}"
    if duration is None:
        return (head + b"}",)
    return (head + b',"duration":' + b"%d}" % duration,)


def _plain_duration(duration: object) -> TypeGuard[int | None]:
    return duration is None or (type(duration) is int and 1 <= duration <= 60)


def _validated(
    number: object, options: NumberOptions, media: Media | None, duration: object
) -> tuple[str, int | None]:
    data: dict[str, Any] = {"number": number}
    if media is not None:
        model: type[AudioCallBody | FakeCallBody] = AudioCallBody
        data["media"] = media
    else:
        model = FakeCallBody
        data["duration"] = duration
    try:
        body = model.model_validate(data, context=dict(options))
    except ValidationError as exc:
        first = exc.errors()[0]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, InvalidRequestError):
            raise cause from None
        field = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidRequestError(f"{field}: {first['msg']}", field=field) from None
    return str(body.number), getattr(body, "duration", None)


class UrlMediaCache:
    """The last ``media_url``'s ``Media``: the same URL call after call (the simple way to run a
    campaign) is not checked, hashed and encoded again. One entry, and short strings only: a big
    ``data:`` URI is not kept alive by the client."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[str, Media] | None = None

    def get(self, url: str, max_bytes: int) -> Media:
        last = self._last
        if last is not None and type(url) is str and last[0] == url:
            return last[1]
        media = Media.from_url(url, max_bytes=max_bytes)
        if type(url) is str and len(url) <= _URL_MEDIA_CACHE_CHARS:
            self._last = (url, media)
        return media


def media_source(
    media: MediaArg | None, media_url: str | None, media_base64: str | None, *,
    max_bytes: int, urls: UrlMediaCache,
) -> Media | str | os.PathLike[str]:
    """The call's ``Media``, or the path of a file still to be read."""
    if isinstance(media, Media) and media_url is None and media_base64 is None:
        return media  # the campaign path: already checked and encoded
    given = [name for name, value in (("media", media), ("media_url", media_url),
                                      ("media_base64", media_base64)) if value is not None]
    if len(given) != 1:
        which = ", ".join(given) if given else "none"
        raise InvalidRequestError(
            f"give exactly one of media, media_url or media_base64 (got {which})", field="media"
        )
    if media_url is not None:
        return urls.get(media_url, max_bytes)
    if media_base64 is not None:
        return Media.from_base64(media_base64, max_bytes=max_bytes)
    if isinstance(media, bytes | bytearray | memoryview):
        return Media.from_bytes(media, max_bytes=max_bytes)
    if isinstance(media, str | os.PathLike):
        return media
    raise InvalidRequestError(
        f"media must be bytes, a file path or a Media, not {type(media).__name__}", field="media"
    )
