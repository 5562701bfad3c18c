"""Every bad input is an ``InvalidRequestError`` with nothing sent (#7.12).

Before: lone surrogates raised ``UnicodeEncodeError``, a malformed IPv6 URL or a NUL in a path
``ValueError``, a str setting ``TypeError``; an @lid of Arabic-Indic digits was accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ryze_async import InvalidRequestError, Media, RyzeClient
from ryze_async.testing import FakeRyzeServer

from .audio import MP3
from .conftest import ClientFactory

NUMBER = "5511999999999"


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"instance": "a\udc80b"}, "instance"),
        ({"instance": 3}, "instance"),
        ({"base_url": "http://[::1"}, "base_url"),
        ({"base_url": "https://[::1/x"}, "base_url"),
        ({"base_url": "http://127.0.0.1:99999"}, "base_url"),
        ({"base_url": "http://127.0.0.1:port"}, "base_url"),
        ({"base_url": "http://127.0.0.1\udc80"}, "base_url"),
        ({"base_url": "http://127.0.0.1/a\x00b"}, "base_url"),
        ({"base_url": "https://\u2100.com"}, "base_url"),
        ({"base_url": b"http://127.0.0.1"}, "base_url"),
        ({"rate_limit": "100"}, "rate_limit"),
        ({"rate_limit": 1.5}, "rate_limit"),
        ({"rate_period": float("inf")}, "rate_period"),
        ({"rate_period": "60"}, "rate_period"),
        ({"rate_margin": float("nan")}, "rate_margin"),
        ({"timeout": "30"}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"connect_timeout": True}, "connect_timeout"),
        ({"max_retries": 2.0}, "max_retries"),
        ({"max_media_bytes": True}, "max_media_bytes"),
        ({"keepalive_timeout": None}, "keepalive_timeout"),
    ],
)
def test_bad_client_settings(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        RyzeClient(**{"token": "t", "instance": "i", **settings})
    assert info.value.field == field


@pytest.mark.parametrize(
    "call",
    [
        {"instance": "my\udc80instance", "media": MP3},
        {"instance": "\ud800", "media_url": "https://e.com/a.mp3"},
        {"media_url": "https://e.com/\udc80.mp3"},
        {"media_url": "data:audio/mpeg;\udc80base64,SUQz"},
        {"media_url": "https://[::1/a.mp3"},
        {"media_url": "https://e.com:99999/a.mp3"},
        {"media": "audio\x00.mp3"},
        {"media": Path("audio\x00.mp3")},
        {"media": b"audio.mp3".decode() + "\udc80"},
        {"media_base64": "SUQz\udc80"},
        {"number": "\u0665\u0665\u0665@lid", "media": MP3},
        {"number": "\uff15\uff15\uff15@lid", "media": MP3},
        {"number": "5511999999999\udc80", "media": MP3},
    ],
)
async def test_bad_call_inputs_send_nothing(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, call: dict[str, Any]
) -> None:
    client = make_client(ryze_server, allow_lid=True)
    number = call.pop("number", NUMBER)
    with pytest.raises(InvalidRequestError):
        await client.audio_call(number, **call)
    assert ryze_server.requests == []
    assert ryze_server.connections_accepted == 0


@pytest.mark.parametrize("duration", [True, False, 5.0, "5", 10**30, -1, 0, 61, float("nan")])
async def test_bad_durations_send_nothing(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, duration: Any
) -> None:
    client = make_client(ryze_server)
    with pytest.raises(InvalidRequestError):
        await client.fake_call(NUMBER, duration=duration)
    assert ryze_server.requests == []


def test_media_from_url_and_base64_refuse_surrogates_and_bad_urls() -> None:
    for url in ("https://e.com/\udc80", "http://[::1", "https://e.com:-1/a", "\udc80"):
        with pytest.raises(InvalidRequestError):
            Media.from_url(url)
    with pytest.raises(InvalidRequestError):
        Media.from_base64("\udc80")
