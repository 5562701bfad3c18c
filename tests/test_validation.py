"""Bad input is refused with a clear InvalidRequestError, before anything is sent."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ryze_async import InvalidRequestError, Media, RyzeClient, normalize_number

from .audio import AUDIO_SAMPLES, MP3

TOKEN = "tok-validation-123"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5511999999999", "5511999999999"),
        ("+55 11 99999-9999", "5511999999999"),
        ("+55 (11) 99999.9999", "5511999999999"),
        (" +1 650 253 0000 ", "16502530000"),
        ("+39 06 1234 5678", "390612345678"),
        ("5511999999999@s.whatsapp.net", "5511999999999@s.whatsapp.net"),
        ("5511999999999@S.WhatsApp.Net", "5511999999999@s.whatsapp.net"),
    ],
)
def test_numbers_are_normalised(raw: str, expected: str) -> None:
    assert normalize_number(raw) == expected


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "empty"),
        ("1234567", "country code"),
        (" 12345678 ", "country code"),
        ("123456789012345", "country code"),
        ("1234567890123456", "country code"),
        ("55 11 abc", "not a phone number"),
        ("5511999999999/1", "not a phone number"),
        ("120363000000000000@g.us", "group"),
        ("120363000000000000@newsletter", "newsletter"),
        ("status@broadcast", "broadcast"),
        ("123456789@lid", "@lid"),
        ("abc@s.whatsapp.net", "8 to 15 ASCII digits"),
        ("5511999999999@example.com", "personal WhatsApp"),
    ],
)
def test_bad_numbers_are_refused(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment) as info:
        normalize_number(raw)
    assert info.value.field == "number"


def test_lid_is_opt_in() -> None:
    assert normalize_number("123456789@lid", allow_lid=True) == "123456789@lid"


@pytest.mark.parametrize(("name", "data"), sorted(AUDIO_SAMPLES.items()))
def test_sniffing_recognises_each_container(name: str, data: bytes) -> None:
    # The format is read from the first 16 bytes only.
    assert Media.from_bytes(data[:16]).format == name
    assert Media.from_bytes(data[:16] + b"%PDF-1.7" * 8).format == name


@pytest.mark.parametrize("data", [b"%PDF-1.7", b"<html></html>", b"\x00" * 32, b"GIF89a"])
def test_sniffing_refuses_what_is_not_audio(data: bytes) -> None:
    with pytest.raises(InvalidRequestError, match="does not look like audio"):
        Media.from_bytes(data)


def test_media_bytes_checks() -> None:
    with pytest.raises(InvalidRequestError, match="empty"):
        Media.from_bytes(b"")
    with pytest.raises(InvalidRequestError, match="over the 64-byte cap"):
        Media.from_bytes(MP3 + b"\x00" * 64, max_bytes=64)
    media = Media.from_bytes(MP3)
    assert media.kind == "base64"
    assert media.format == "mp3"
    assert media.size == len(MP3)
    assert media.wire_fragment == b'"mediaBase64":"' + base64.b64encode(MP3) + b'"'


def test_media_file_checks(tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp3"
    with pytest.raises(InvalidRequestError, match="cannot read media file"):
        Media.from_file(missing)
    big = tmp_path / "big.mp3"
    big.write_bytes(MP3 + b"\x00" * 100)
    with pytest.raises(InvalidRequestError, match="over the 50-byte cap"):
        Media.from_file(big, max_bytes=50)
    good = tmp_path / "good.mp3"
    good.write_bytes(MP3)
    assert Media.from_file(good).fingerprint == Media.from_bytes(MP3).fingerprint


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "empty"),
        ("ftp://example.com/a.mp3", "http\\(s\\) URL, a data: URI or base64"),
        ("example.com/a.mp3", "http\\(s\\) URL, a data: URI or base64"),
        ("https:///a.mp3", "no host"),
        ("https://exa mple.com/a.mp3", "whitespace"),
        ("data:audio/mpeg,rawtext", "must be base64"),
        ("data:audio/mpeg;base64,@@@", "not valid base64"),
    ],
)
def test_media_url_checks(url: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        Media.from_url(url)


def test_media_url_forms() -> None:
    b64 = base64.b64encode(MP3).decode()
    assert Media.from_url("https://example.com/m.mp3").kind == "url"
    assert Media.from_url(f"data:audio/mpeg;base64,{b64}").format == "mp3"
    assert Media.from_url(b64).kind == "base64"


@pytest.mark.parametrize("text", ["not base64!", "SUQz\nBAAA", "SUQzBA", "-_-_"])
def test_media_base64_checks(text: str) -> None:
    with pytest.raises(InvalidRequestError, match="not valid base64"):
        Media.from_base64(text)


def test_media_is_immutable_and_not_constructible_directly() -> None:
    media = Media.from_bytes(MP3)
    with pytest.raises(AttributeError):
        media.kind = "url"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Media()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"base_url": "http://example.com"}, "plain http"),
        ({"base_url": "ftp://example.com"}, "http\\(s\\) URL"),
        ({"base_url": "https://user:pw@example.com"}, "credentials"),
        ({"base_url": "https://example.com/?x=1"}, "query"),
        ({"instance": "a\nb"}, "one path segment"),
        ({"instance": ".."}, "one path segment"),
        ({"instance": " padded"}, "whitespace"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"rate_period": 0}, "rate_period"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout": 5, "connect_timeout": 5}, "connect_timeout"),
        ({"keepalive_timeout": -1}, "keepalive_timeout"),
    ],
)
def test_bad_client_settings(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        RyzeClient(token=TOKEN, **kwargs)  # type: ignore[arg-type]


def test_http_allowed_for_loopback_or_by_opt_in() -> None:
    for url in ("http://127.0.0.1:8080", "http://localhost", "http://[::1]:9"):
        RyzeClient(token=TOKEN, base_url=url)
    RyzeClient(token=TOKEN, base_url="http://example.com", allow_http=True)


def test_token_from_environment_and_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RYZE_TOKEN", raising=False)
    with pytest.raises(InvalidRequestError, match="RYZE_TOKEN"):
        RyzeClient()
    monkeypatch.setenv("RYZE_TOKEN", TOKEN)
    monkeypatch.setenv("RYZE_INSTANCE", "env-instance")
    monkeypatch.setenv("RYZE_BASE_URL", "http://127.0.0.1:1")
    client = RyzeClient()
    assert client.instance == "env-instance"
    assert "env-instance" in repr(client)
    assert "127.0.0.1:1" in repr(client)


def test_malformed_token_is_refused_without_echoing_it() -> None:
    secret = "secret-with-newline\nX-Injected: 1"
    with pytest.raises(InvalidRequestError) as info:
        RyzeClient(token=secret)
    assert "secret-with-newline" not in str(info.value)
    assert "secret-with-newline" not in repr(info.value)
