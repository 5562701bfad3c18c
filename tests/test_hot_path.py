"""The per-call fast paths (benchmarks/overhead.py) give exactly what the plain paths give."""

from __future__ import annotations

import base64
import json
import sys
from email.utils import parsedate_to_datetime

import pytest

from ryze_async import InvalidRequestError, Media, RetryScheduled, RyzeClient, normalize_number
from ryze_async import _answers as answers_module
from ryze_async._transports._aiohttp import JOIN_BELOW, PartsPayload
from ryze_async.testing import (
    FakeRyzeServer,
    MockRequest,
    MockResponse,
    MockTransport,
    run_virtual,
)

from .audio import MP3
from .conftest import ClientFactory

NUMBERS = [
    "5511999999999", "+55 (11) 99999-9999", "55.11.9999.9999", " 5511999999999 ",
    "5511999999999@s.whatsapp.net", "5511999999999@S.WHATSAPP.NET", "123456789@lid",
    "1234567", "1234567890123456", "55119999x9999", "", "   ", "12345678@g.us",
    "x@newsletter", "status@broadcast", "abc@lid", "5511999999999@example.com", "1\u00a02345678",
]


def _outcome(call: object) -> bytes | str:
    try:
        return call()  # type: ignore[operator,no-any-return]
    except InvalidRequestError as exc:
        return f"{exc.field}: {exc}"


def _sent_body(call: str, number: str, allow_lid: bool) -> bytes:
    """The body a client sends for ``number``, through the transport seam."""
    transport = MockTransport(lambda _r: MockResponse(200, {"success": True}))

    async def main() -> None:
        async with RyzeClient(token="t", instance="i", rate_limit=None, allow_lid=allow_lid,
                              transport=transport) as client:
            if call == "audio":
                await client.audio_call(number, media_url="https://example.com/m.mp3")
            else:
                await client.fake_call(number, duration=9)

    run_virtual(main())
    (request,) = transport.requests
    return request.body


@pytest.mark.parametrize("call", ["audio", "fake"])
@pytest.mark.parametrize("allow_lid", [False, True])
@pytest.mark.parametrize("number", NUMBERS)
def test_both_bodies_equal_plain_json_of_the_normalised_number(
    call: str, number: str, allow_lid: bool
) -> None:
    def fast() -> bytes:
        return _sent_body(call, number, allow_lid)

    def plain() -> bytes:
        normalised = normalize_number(number, allow_lid=allow_lid)
        extra = {"mediaUrl": "https://example.com/m.mp3"} if call == "audio" else {"duration": 9}
        return json.dumps({"number": normalised, **extra}, separators=(",", ":")).encode()

    assert _outcome(fast) == _outcome(plain)


@pytest.mark.parametrize("number", [5511999999999, None, b"5511999999999"])
async def test_a_number_that_is_not_a_str_is_refused_by_the_model(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, number: object
) -> None:
    client = make_client(ryze_server)
    with pytest.raises(InvalidRequestError) as info:
        await client.audio_call(number, media_url="https://example.com/m.mp3")  # type: ignore[arg-type]
    assert info.value.field == "number"
    assert ryze_server.requests == []


def _refused_as_spacing(ch: str) -> bool:
    try:
        Media.from_url(f"https://example.com/a{ch}b.mp3")
    except InvalidRequestError as exc:
        return "whitespace or control" in str(exc)
    return False


def test_a_media_url_is_refused_exactly_for_isspace_or_below_32() -> None:
    # The check is one regex search, not a loop over str.isspace(): they must agree. Every
    # character that isspace() is below U+3100; above it, a sample of each 251st code point.
    points = [*range(0x3100), *range(0x3100, sys.maxunicode + 1, 251)]
    wrong = [hex(p) for p in points
             if _refused_as_spacing(chr(p)) != (chr(p).isspace() or p < 32)]
    assert wrong == []


def test_url_media_is_reused_only_for_the_same_short_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []
    from_url = Media.from_url

    def counting(url: str, **kwargs: object) -> Media:
        built.append(url)
        return from_url(url, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Media, "from_url", staticmethod(counting))
    transport = MockTransport(lambda _r: MockResponse(200, {"success": True}))
    url = "https://example.com/m.mp3"
    long_url = "https://example.com/" + "a" * 5000
    refused: list[str] = []

    async def main() -> None:
        async with RyzeClient(token="t", instance="i", rate_limit=None,
                              transport=transport) as client:
            for media_url in (url, url, url + "?v=2", long_url, long_url):
                await client.audio_call("5511999999999", media_url=media_url)
            for _ in range(2):  # a refused URL is refused every time, never remembered
                with pytest.raises(InvalidRequestError, match="whitespace") as info:
                    await client.audio_call("5511999999999",
                                            media_url="https://example.com/a b.mp3")
                refused.append(str(info.value))

    run_virtual(main())
    assert built == [url, url + "?v=2", long_url, long_url, "https://example.com/a b.mp3",
                     "https://example.com/a b.mp3"]
    assert len(refused) == 2
    assert [r.json()["mediaUrl"] for r in transport.requests][2] == url + "?v=2"


def _retry_delay(answers: list[MockResponse]) -> list[float]:
    waits: list[float] = []

    class Hooks:
        def on_retry_scheduled(self, details: RetryScheduled) -> None:
            waits.append(details.delay)

    pending = iter(answers)

    def handler(_request: MockRequest) -> MockResponse:
        return next(pending)

    async def main() -> None:
        async with RyzeClient(token="t", instance="i", rate_limit=None, max_retries=len(answers),
                              transport=MockTransport(handler), hooks=Hooks()) as client:
            await client.fake_call("5511999999999")

    run_virtual(main())
    return waits


def test_dates_read_again_give_the_same_reset() -> None:
    dates = ("Mon, 24 Nov 2025 02:30:00 GMT", "Mon, 24 Nov 2025 02:30:01 GMT",
             "Mon, 24 Nov 2025 02:30:00 GMT")
    reset = parsedate_to_datetime(dates[0]).timestamp() + 30
    refusals = [MockResponse(429, headers={"Date": date, "X-RateLimit-Reset": str(reset)})
                for date in dates for _ in range(2)]
    assert _retry_delay([*refusals, MockResponse(200, {"success": True})]) == [
        30.0, 30.0, 29.0, 29.0, 30.0, 30.0]
    # An unreadable Date: the local clock, and a reset long past is no wait; no reset: a period.
    unreadable = MockResponse(429, headers={"Date": "not a date", "X-RateLimit-Reset": "0"})
    assert _retry_delay([unreadable, MockResponse(429), MockResponse(200, {"success": True})]) == [
        0.0, 60.0]


BODIES = [
    b'{"success":true,"callId":"a"}', b'{"a":NaN}', b'{"a":1e400}', b"\xef\xbb\xbf{}",
    '{"a":1}'.encode("utf-16"), b'{"a":"\\ud800"}', b"[1]", b"", b"nope", b'{"a":"\xff"}',
    b'{"a":1,"a":2}', b'{"a":123456789012345678901234567890}', b'{"a":-9223372036854775809}',
    b'{"a":18446744073709551616}', b'{"a":-0.0,"b":1.0000000000000002,"c":1E5}',
    b'{"a": [1, -12345678901234567890123]}', b'{"a":\n123456789012345678901}',
]


def test_orjson_reads_ordinary_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []

    def loads(body: bytes) -> object:
        seen.append(body)
        return json.loads(body)

    monkeypatch.setattr(answers_module, "_orjson_loads", loads)
    ordinary = b'{"success":true,"callId":"AC00000000000000000000001","number":"5511999999999"}'
    assert answers_module._json_object(ordinary) == json.loads(ordinary)
    assert seen == [ordinary]  # long digit runs inside strings do not force the json fallback
    for long_integer in (b'{"a":12345678901234567890}', b'{"a": [ -12345678901234567890]}'):
        assert answers_module._json_object(long_integer) == json.loads(long_integer)
    assert seen == [ordinary]


@pytest.mark.parametrize("body", BODIES)
def test_json_answers_read_the_same_with_or_without_orjson(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_orjson = answers_module._json_object(body)
    monkeypatch.setattr(answers_module, "_orjson_loads", None)
    without = answers_module._json_object(body)
    expected = None
    try:
        data = json.loads(body)
        expected = data if isinstance(data, dict) else None
    except (ValueError, UnicodeDecodeError):
        pass
    assert repr(without) == repr(expected)
    assert repr(with_orjson) == repr(expected)


class _Writer:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)


@pytest.mark.parametrize("limit", [None, 10, 3, 2, 0])
async def test_parts_payload_writes_the_parts_in_order(limit: int | None) -> None:
    parts = (b"abc", b"defghij", b"k")
    payload = PartsPayload(parts)
    assert payload.size == 11
    assert payload.decode() == "abcdefghijk"
    writer = _Writer()
    await payload.write_with_length(writer, limit)  # type: ignore[arg-type]
    assert b"".join(writer.chunks) == b"abcdefghijk"[:limit]
    if limit is None:  # nothing copied: the very same objects go to the writer
        assert all(chunk is part for chunk, part in zip(writer.chunks, parts, strict=True))


async def test_a_large_media_body_arrives_whole_and_in_order(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    audio = MP3 + bytes(range(256)) * (2 * JOIN_BELOW // 256)
    media = Media.from_bytes(audio)
    client = make_client(ryze_server)
    for number in ("5511999999999", "5511988888888"):
        await client.audio_call(number, media=media)
    first, second = ryze_server.requests
    expected = b'{"number":"5511999999999","mediaBase64":"' + base64.b64encode(audio) + b'"}'
    assert first.body == expected
    assert first.headers["Content-Length"] == str(len(expected))
    assert "Transfer-Encoding" not in first.headers
    assert first.headers["Content-Type"] == "application/json"
    b64 = base64.b64encode(audio).decode()
    assert second.json == {"number": "5511988888888", "mediaBase64": b64}
