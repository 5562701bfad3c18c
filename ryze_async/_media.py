"""The audio a call plays: validated, encoded and fingerprinted once, then reused per call."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
from typing import Literal
from urllib.parse import urlsplit

from ._exceptions import InvalidRequestError
from ._public import public

__all__ = ["DEFAULT_MAX_MEDIA_BYTES", "Media", "sniff_audio"]

DEFAULT_MAX_MEDIA_BYTES = 16 * 1024 * 1024

_SNIFF_BYTES = 16
# Exactly the characters where str.isspace() or ord(ch) < 32 (checked over every code point);
# one regex search instead of a Python-level loop over the URL.
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f]")


# (format, ((offset, magic), ...)): every magic must match at its offset.
_MAGIC: tuple[tuple[str, tuple[tuple[int, bytes], ...]], ...] = (
    ("mp3", ((0, b"ID3"),)),
    ("ogg", ((0, b"OggS"),)),
    ("wav", ((0, b"RIFF"), (8, b"WAVE"))),
    ("m4a", ((4, b"ftyp"),)),
    ("flac", ((0, b"fLaC"),)),
    ("amr", ((0, b"#!AMR"),)),
    ("webm", ((0, b"\x1a\x45\xdf\xa3"),)),
    ("aac", ((0, b"ADIF"),)),
)


def sniff_audio(head: bytes) -> str | None:
    """Name the audio container that ``head`` (the first bytes of a file) starts, or None."""
    for name, magics in _MAGIC:
        if all(head[offset : offset + len(magic)] == magic for offset, magic in magics):
            return name
    if len(head) < 2 or head[0] != 0xFF:
        return None
    second = head[1]
    # ADTS (raw AAC): 12 sync bits, then layer bits 00.
    if second & 0xF6 == 0xF0:
        return "aac"
    # An MPEG audio frame (mp3 without an ID3 tag): 11 sync bits, a version that is not the
    # reserved 01, a layer that is not the reserved 00.
    if second & 0xE0 == 0xE0 and second & 0x18 != 0x08 and second & 0x06 != 0:
        return "mp3"
    return None


@public
class Media:
    """One validated media source, with its JSON wire fragment built once.

    Build it with ``from_file``, ``from_bytes``, ``from_url`` or ``from_base64``; pass it as
    ``audio_call(number, media=m)`` for every number of a campaign, so the audio is read,
    checked and base64-encoded once, not once per call.
    """

    __slots__ = ("_fragment", "fingerprint", "format", "kind", "size")

    kind: Literal["url", "base64"]
    format: str | None
    size: int | None
    fingerprint: str
    _fragment: bytes

    def __init__(self) -> None:
        raise TypeError("use Media.from_file, from_bytes, from_url or from_base64")

    @classmethod
    def _build(
        cls, key: str, value: str, *, kind: Literal["url", "base64"], fmt: str | None,
        size: int | None,
    ) -> Media:
        media = object.__new__(cls)
        object.__setattr__(media, "kind", kind)
        object.__setattr__(media, "format", fmt)
        object.__setattr__(media, "size", size)
        object.__setattr__(media, "fingerprint", hashlib.sha256(value.encode()).hexdigest())
        # key and value are JSON-encoded once here: per call only the number is spliced in.
        fragment = f"{json.dumps(key)}:{json.dumps(value)}".encode()
        object.__setattr__(media, "_fragment", fragment)
        return media

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Media is immutable")

    def __repr__(self) -> str:
        size = "" if self.size is None else f", size={self.size}"
        return f"Media(kind={self.kind!r}, format={self.format!r}{size})"

    @property
    def wire_fragment(self) -> bytes:
        """The ``"mediaUrl": ...`` or ``"mediaBase64": ...`` member of the JSON body."""
        return self._fragment

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MEDIA_BYTES
    ) -> Media:
        """Audio file contents; sent base64-encoded as ``mediaBase64``."""
        raw = bytes(data)
        fmt = _check_audio_bytes(raw, max_bytes=max_bytes, what="media")
        encoded = base64.b64encode(raw).decode("ascii")
        return cls._build("mediaBase64", encoded, kind="base64", fmt=fmt, size=len(raw))

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_MEDIA_BYTES
    ) -> Media:
        """An audio file on disk; read once and sent as ``mediaBase64``.

        Only a regular file (a symlink to one is fine) is read, and never more than
        ``max_bytes + 1`` bytes of it: a FIFO, a device or a directory is refused at once.
        """
        raw = _read_regular_file(path, max_bytes)
        return cls.from_bytes(raw, max_bytes=max_bytes)

    @classmethod
    def from_url(cls, url: str, *, max_bytes: int = DEFAULT_MAX_MEDIA_BYTES) -> Media:
        """``mediaUrl``: a public http(s) URL, a ``data:`` URI with base64, or raw base64."""
        if not isinstance(url, str) or not url.strip():
            raise InvalidRequestError("media_url is empty", field="media_url")
        value = url.strip()
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequestError("media_url is not valid Unicode (a lone surrogate)",
                                      field="media_url") from None
        lowered = value[:8].lower()
        if lowered.startswith(("http://", "https://")):
            _check_public_url(value)
            return cls._build("mediaUrl", value, kind="url", fmt=None, size=None)
        if lowered.startswith("data:"):
            header, sep, payload = value.partition(",")
            if not sep or not header.lower().endswith(";base64"):
                raise InvalidRequestError(
                    "media_url data URI must be base64 (data:<type>;base64,<data>)",
                    field="media_url",
                )
            raw = _decode_base64(payload, field="media_url", max_bytes=max_bytes)
            return cls._build("mediaUrl", value, kind="base64", fmt=sniff_audio(raw[:16]),
                              size=len(raw))
        try:
            raw = _decode_base64(value, field="media_url", max_bytes=max_bytes)
        except InvalidRequestError:
            raise InvalidRequestError(
                "media_url must be an http(s) URL, a data: URI or base64", field="media_url"
            ) from None
        return cls._build("mediaUrl", value, kind="base64", fmt=sniff_audio(raw[:16]),
                          size=len(raw))

    @classmethod
    def from_base64(cls, data: str, *, max_bytes: int = DEFAULT_MAX_MEDIA_BYTES) -> Media:
        """``mediaBase64``: the file contents as standard base64 (no data: prefix)."""
        if not isinstance(data, str) or not data:
            raise InvalidRequestError("media_base64 is empty", field="media_base64")
        raw = _decode_base64(data, field="media_base64", max_bytes=max_bytes)
        return cls._build("mediaBase64", data, kind="base64", fmt=sniff_audio(raw[:16]),
                          size=len(raw))


def _read_regular_file(path: object, cap: int) -> bytes:
    name = os.fspath(path) if isinstance(path, str | os.PathLike) else None
    if not isinstance(name, str):
        raise InvalidRequestError(
            f"media path must be a str or os.PathLike[str], not {type(path).__name__}",
            field="media",
        )
    shown = repr(name)
    try:
        # stat first, so a device is never even opened (opening some has side effects); then
        # O_NONBLOCK so a FIFO swapped in meanwhile cannot block the open, and fstat of what was
        # really opened.
        _require_regular(os.stat(name), shown)
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb", closefd=True) as file:
            _require_regular(os.fstat(fd), shown, cap)
            # One byte over the cap tells "too big" without trusting st_size (which a growing
            # file or a /proc file gets wrong), and bounds the read whatever the file is.
            raw = file.read(cap + 1)
    except (OSError, ValueError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidRequestError(f"cannot read media file {shown}: {reason}",
                                  field="media") from None
    if len(raw) > cap:
        raise InvalidRequestError(f"media file {shown} is over the {cap}-byte cap", field="media")
    return raw


def _require_regular(st: os.stat_result, shown: str, cap: int | None = None) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise InvalidRequestError(
            f"media file {shown} is not a regular file (a FIFO, device, socket or directory)",
            field="media",
        )
    if cap is not None and st.st_size > cap:
        raise InvalidRequestError(
            f"media file {shown} is {st.st_size} bytes, over the {cap}-byte cap", field="media"
        )


def _check_audio_bytes(raw: bytes, *, max_bytes: int, what: str) -> str:
    if not raw:
        raise InvalidRequestError(f"{what} is empty", field=what)
    if len(raw) > max_bytes:
        raise InvalidRequestError(
            f"{what} is {len(raw)} bytes, over the {max_bytes}-byte cap", field=what
        )
    fmt = sniff_audio(raw[:_SNIFF_BYTES])
    if fmt is None:
        raise InvalidRequestError(
            f"{what} does not look like audio (expected mp3, ogg/opus, wav, m4a/mp4, flac, aac, "
            "amr or webm)",
            field=what,
        )
    return fmt


def _decode_base64(text: str, *, field: str, max_bytes: int) -> bytes:
    # 4 base64 characters carry 3 bytes: refuse oversize input before decoding all of it.
    if len(text) // 4 * 3 > max_bytes + 2:
        raise InvalidRequestError(f"{field} decodes to over the {max_bytes}-byte cap", field=field)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(
            f"{field} is not valid base64 (standard alphabet, padded, no whitespace)",
            field=field,
        ) from None
    if not raw:
        raise InvalidRequestError(f"{field} decodes to nothing", field=field)
    if len(raw) > max_bytes:
        raise InvalidRequestError(f"{field} decodes to over the {max_bytes}-byte cap", field=field)
    return raw


def _check_public_url(url: str) -> None:
    if _SPACE_OR_CONTROL.search(url):
        raise InvalidRequestError("media_url contains whitespace or control characters",
                                  field="media_url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not 0-65535
    except ValueError as exc:
        raise InvalidRequestError(f"media_url is not a valid URL ({exc})",
                                  field="media_url") from None
    if not parts.hostname:
        raise InvalidRequestError("media_url has no host", field="media_url")
