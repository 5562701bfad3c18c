"""Property (#7 acceptance): for any number, instance, media and duration, a call is either an
``InvalidRequestError`` with not one byte sent (no connection, no byte at a byte-counting server
of the tests' own), or exactly one request whose path is one segment decoding back to the
instance and whose JSON body is exactly the input (the number as ``normalize_number`` says).

Strategies mix valid data with near misses and plain garbage, so both branches are exercised.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ryze_async import InvalidRequestError, RyzeClient, normalize_number

from .audio import AUDIO_SAMPLES
from .counting_server import ByteServer

SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
AUDIO = "/api/call/audio/"
FAKE = "/api/call/fake/"

# -- strategies ---------------------------------------------------------------------------------

_DIGITS = st.text("0123456789", min_size=0, max_size=17)
_BR_MOBILE = st.integers(0, 10**8 - 1).map(lambda n: f"{n:08d}")
_FORMATS = (
    "+55 11 9{a}-{b}", "55119{a}{b}", "+55 (11) 9{a}.{b}", " +55 11 9{a}{b} ", "(11) 9{a}-{b}",
    "5511 9{a} {b}", "+1 650 253 {a}", "0055 11 9{a}{b}", "+55 11 9{a}{b}@s.whatsapp.net",
    "55119{a}{b}@s.whatsapp.net", "5511{a}{b}@s.whatsapp.net", "55119{a}{b}@g.us", "{a}@lid",
    "+\u0665\u0665 \u0661\u0661 \u0669{a}{b}", "55119{a}{b}x", "++55119{a}{b}",
)
NUMBERS = st.one_of(
    st.builds(lambda f, n: f.format(a=n[:4], b=n[4:]), st.sampled_from(_FORMATS), _BR_MOBILE),
    _DIGITS,
    st.builds(lambda d: "+" + d, _DIGITS),
    st.text(alphabet="0123456789+-(). @\u0665x\x00\udc80", max_size=20),
    st.text(max_size=12),
    st.sampled_from([None, 5511999999999, b"5511999999999", ["5511999999999"]]),
)
INSTANCES = st.one_of(
    st.text(alphabet="abc-_.", min_size=1, max_size=8),
    st.text(max_size=10),
    st.sampled_from([".", "..", "a/b", "a?b#c", "a%2Fb", " a", "a ", "\udc80", "é/ü",
                     "a\x00b", "a\x7fb", "", None, 3]),
)
_AUDIO = st.builds(lambda head, tail: head + tail, st.sampled_from(list(AUDIO_SAMPLES.values())),
                   st.binary(max_size=40))


@dataclass(frozen=True)
class MediaInput:
    kwargs: dict[str, Any]
    wire: dict[str, str] | None  # the body's media member when the input is accepted


def _bytes_media(data: bytes) -> MediaInput:
    return MediaInput({"media": data}, {"mediaBase64": base64.b64encode(data).decode()})


def _b64_media(text: str) -> MediaInput:
    return MediaInput({"media_base64": text}, {"mediaBase64": text})


def _url_media(text: str) -> MediaInput:
    return MediaInput({"media_url": text},
                      {"mediaUrl": text.strip()} if isinstance(text, str) else None)


MEDIA = st.one_of(
    st.builds(_bytes_media, st.one_of(_AUDIO, st.binary(max_size=40))),
    st.builds(_b64_media, st.one_of(_AUDIO.map(lambda b: base64.b64encode(b).decode()),
                                    st.text(max_size=20))),
    st.builds(_url_media, st.one_of(
        st.builds(lambda p: "https://example.com/" + p, st.text(max_size=12)),
        st.sampled_from(["http://[::1", "https://[::1/a.mp3", "https://e.com:99999/a.mp3",
                         "https://e.com/\udc80.mp3", "data:audio/mpeg;base64,\udc80",
                         "ftp://e.com/a.mp3", "https://", " https://e.com/a b.mp3"]),
        _AUDIO.map(lambda b: "data:audio/mpeg;base64," + base64.b64encode(b).decode()),
        st.text(max_size=16))),
    st.sampled_from([MediaInput({}, None),
                     MediaInput({"media": b"ID3", "media_url": "https://e.com/a.mp3"}, None)]),
)
DURATIONS = st.one_of(
    st.none(), st.integers(-3, 70), st.booleans(), st.floats(allow_nan=True),
    st.sampled_from([10**30, -(10**30), "5", 5.0, 2**63]),
)

# -- the oracle ---------------------------------------------------------------------------------


@pytest.fixture
def world() -> Iterator[tuple[asyncio.AbstractEventLoop, ByteServer, RyzeClient]]:
    """One server, one client and one loop for a whole test function (hypothesis examples run
    inside it); the client has no quota and no retries, so one call is at most one request."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(ByteServer().start())
    client = RyzeClient("prop-token", base_url=server.url, rate_limit=None, max_retries=0)
    try:
        yield loop, server, client
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(server.close())
        loop.close()


def _check_one_call(
    loop: asyncio.AbstractEventLoop, server: ByteServer,
    call: Callable[[], Coroutine[Any, Any, object]], route: str, instance: object,
) -> dict[str, Any] | None:
    """Run ``call``; return the JSON body sent, or None when it was refused having sent nothing."""
    before = (server.connections, server.bytes_received, len(server.requests))
    try:
        loop.run_until_complete(call())
    except InvalidRequestError:
        assert (server.connections, server.bytes_received, len(server.requests)) == before
        return None
    new = server.requests[before[2]:]
    assert len(new) == 1, new
    path = new[0].path
    assert path.startswith(route)
    segment = path[len(route):]
    assert segment
    assert not {"/", "?", "#"} & set(segment)
    assert unquote(segment, errors="strict") == instance
    body: dict[str, Any] = json.loads(new[0].body)
    return body


def _expected_number(number: object) -> str:
    # The call was accepted: the number must be what normalize_number says, on its own terms,
    # ASCII, and a real number (valid plain, possible JID).
    assert isinstance(number, str)
    wire = normalize_number(number)
    user = wire.partition("@")[0]
    assert user.isascii()
    assert user.isdigit()
    assert len(user) <= 15
    parsed = phonenumbers.parse("+" + user)
    assert phonenumbers.is_possible_number(parsed)
    if "@" not in wire:
        assert phonenumbers.is_valid_number(parsed)
    return wire


def test_audio_calls_send_exactly_the_input_or_nothing(
    world: tuple[asyncio.AbstractEventLoop, ByteServer, RyzeClient],
) -> None:
    loop, server, client = world
    seen = {"sent": 0, "refused": 0}

    @SETTINGS
    @given(number=NUMBERS, instance=INSTANCES, media=MEDIA)
    def check(number: Any, instance: Any, media: MediaInput) -> None:
        body = _check_one_call(
            loop, server,
            lambda: client.audio_call(number, instance=instance, **media.kwargs),
            AUDIO, instance)
        if body is None:
            seen["refused"] += 1
            return
        seen["sent"] += 1
        assert media.wire is not None
        assert body == {"number": _expected_number(number), **media.wire}

    check()
    assert seen["sent"], seen
    assert seen["refused"], seen


def test_fake_calls_send_exactly_the_input_or_nothing(
    world: tuple[asyncio.AbstractEventLoop, ByteServer, RyzeClient],
) -> None:
    loop, server, client = world
    seen = {"sent": 0, "refused": 0}

    @SETTINGS
    @given(number=NUMBERS, instance=INSTANCES, duration=DURATIONS)
    def check(number: Any, instance: Any, duration: Any) -> None:
        body = _check_one_call(
            loop, server,
            lambda: client.fake_call(number, duration=duration, instance=instance),
            FAKE, instance)
        if body is None:
            seen["refused"] += 1
            return
        seen["sent"] += 1
        expected: dict[str, Any] = {"number": _expected_number(number)}
        if duration is not None:
            assert type(duration) is int
            assert 1 <= duration <= 60
            expected["duration"] = duration
        assert body == expected

    check()
    assert seen["sent"], seen
    assert seen["refused"], seen
