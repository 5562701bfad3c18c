"""The per-call fast paths (benchmarks/overhead.py) give exactly what the plain paths give."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import subprocess
import sys
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ryze_async import (
    CallResult,
    InvalidRequestError,
    Media,
    RetryScheduled,
    RyzeClient,
    normalize_number,
)
from ryze_async.testing import (
    FakeRyzeServer,
    MockRequest,
    MockResponse,
    MockTransport,
    run_virtual,
)

from .audio import MP3
from .byte_server import ByteServer, byte_server, canned
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


# Answers orjson reads differently from json, or refuses, or reads only by luck. Each is given
# as a success (200) and as an error (400) answer: what the client makes of it shows the parse.
BODIES = [
    b'{"success":true,"callId":"a"}', b'{"a":NaN}', b'{"a":1e400}', b"\xef\xbb\xbf{}",
    '{"a":1}'.encode("utf-16"), b'{"a":"\\ud800"}', b"[1]", b"", b"nope", b'{"a":"\xff"}',
    b'{"success":true,"duration":123456789012345678901234567890}',
    b'{"success":true,"duration":-9223372036854775809}',
    b'{"success":true,"duration":18446744073709551616}',
    b'{"success":true,"duration":\n123456789012345678901}',
    b'{"success":true,"duration":NaN}', b'{"success":true,"duration":1e400}',
    b'{"success":true,"duration":1E5}', b'{"success":true,"duration":-0.0}',
    b'{"success":true,"duration":1.0000000000000002}',
    b'\xef\xbb\xbf{"success":true,"message":"a BOM"}',
    '{"success":true,"message":"UTF-16"}'.encode("utf-16"),
    b'{"success":true,"message":"\\ud800"}', b'{"success":true,"message":"\xff"}',
    b'{"success":true,"message":"a","message":"b"}',
    b'{"success":true,"callId":"12345678901234567890123","number":"5511999999999"}',
    b'{"success":true,"message":[1, -12345678901234567890123]}',
    b'{"success":false,"error":{"message":"\\ud83d\\ude00 no"}}',
    b'{"success":false,"error":{"message":"no"},"n":123456789012345678901234}',
    b'\xef\xbb\xbf{"success":false,"error":{"message":"BOM"}}',
    b'{"success":false,"error":{"message":NaN}}',
]
ORDINARY = b'{"success":true,"callId":"AC00000000000000000000001","number":"5511999999999"}'
LONG_INTEGERS = (b'{"success":true,"duration":12345678901234567890}',
                 b'{"success":true,"duration": [ -12345678901234567890]}')

# Run in a fresh interpreter per orjson mode: "blocked" (sys.modules["orjson"] = None: an
# install without it) or "recording" (orjson itself, noting each body it is asked to read). Reads
# [status, base64 body] pairs on stdin; prints what RyzeClient made of each, and what orjson saw.
_READER = """
import base64, json, sys, types
mode, seen = sys.argv[1], []
if mode == "blocked":
    sys.modules["orjson"] = None
else:
    import orjson
    if mode == "recording":
        def loads(body):
            seen.append(base64.b64encode(body).decode())
            return orjson.loads(body)
        sys.modules["orjson"] = types.SimpleNamespace(loads=loads)
from ryze_async import RyzeClient, RyzeError
from ryze_async.testing import MockResponse, MockTransport, run_virtual

async def read(status, body):
    answer = MockResponse(status, body=body, headers={"Content-Type": "application/json"})
    async with RyzeClient(token="x9-token-q", instance="i", rate_limit=None,
                          transport=MockTransport(lambda _r: answer)) as client:
        try:
            result = await client.fake_call("5511999999999")
        except RyzeError as exc:
            return f"{type(exc).__name__}: {exc}"
        return repr(sorted(result.model_dump().items()))

async def main():
    return [await read(status, base64.b64decode(body)) for status, body in json.load(sys.stdin)]

print(json.dumps({"results": run_virtual(main()), "seen": seen}))
"""


def _read_answers(answers: list[tuple[int, bytes]], *modes: str) -> list[dict[str, Any]]:
    corpus = json.dumps([[status, base64.b64encode(body).decode()] for status, body in answers])
    runs = [subprocess.Popen([sys.executable, "-c", _READER, mode], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True) for mode in modes]
    outputs = [run.communicate(corpus, timeout=60)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * len(modes)
    return [json.loads(output) for output in outputs]


@pytest.mark.infra
def test_answers_read_the_same_with_or_without_orjson() -> None:
    answers = [(status, body) for body in (*BODIES, ORDINARY, *LONG_INTEGERS)
               for status in (200, 400)]
    blocked, recording = _read_answers(answers, "blocked", "recording")
    assert recording["results"] == blocked["results"]
    results = dict(zip(answers, blocked["results"], strict=True))
    # json's reading, whatever orjson would make of it: integers beyond 64 bits stay exact...
    assert "('duration', 123456789012345678901234567890)" in results[200, BODIES[10]]
    assert "('duration', 18446744073709551616)" in results[200, BODIES[12]]
    # ... a BOM, UTF-16 and a lone surrogate are read, NaN is not a duration.
    assert "('message', 'a BOM')" in results[200, BODIES[19]]
    assert "('message', 'UTF-16')" in results[200, BODIES[20]]
    assert "('message', '\\ud800')" in results[200, BODIES[21]]
    assert "malformed success report" in results[200, BODIES[14]]
    assert results[400, BODIES[26]] == "BadRequestError: HTTP 400: \U0001f600 no"
    # orjson reads ordinary answers (long digit runs inside strings do not stop it); json has
    # the last word on long integers.
    seen = [base64.b64decode(body) for body in recording["seen"]]
    assert ORDINARY in seen
    assert not any(body in seen for body in LONG_INTEGERS)


@settings(max_examples=300, deadline=None, database=None)
@given(number=st.integers(min_value=-(10**25), max_value=10**25),
       blank=st.sampled_from(["", " ", "\n", "\t "]),
       call_id=st.from_regex(r"[0-9]{0,30}", fullmatch=True))
def test_an_integer_in_an_answer_is_read_exactly(number: int, blank: str, call_id: str) -> None:
    # Issue 18: the cheap look for 19 digits in a row sends every answer the long-integer regex
    # would to json, so an integer beyond 64 bits is never orjson's float (digit runs in a string,
    # the call id here, do not matter).
    body = f'{{"success":true,"callId":"{call_id}","duration":{blank}{number}}}'.encode()
    transport = MockTransport(lambda _r: MockResponse(200, body=body))

    async def main() -> CallResult:
        async with RyzeClient(token="t", instance="i", rate_limit=None,
                              transport=transport) as client:
            return await client.fake_call("+5511987650001")

    result = run_virtual(main())
    assert (result.duration, result.call_id) == (number, call_id)


def _large_media_sizes() -> list[int]:
    # Bodies of 65,535 bytes (joined into one buffer) and 65,539 bytes (sent in parts, from
    # 64 KiB up) and far over: the base64 of n bytes is 4 * ceil(n / 3), plus 43 around it.
    return [1_000, 49_119, 49_122, 300_000]


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _exact_server(received: list[tuple[bytes, bytes]], done: asyncio.Event,
                  count: int) -> Callable[[ByteServer], Handler]:
    """Answers 200 to the request read up to its Content-Length; then notes it, with every
    byte the client sent after it (until it closed the connection): there must be none."""
    def answer(state: ByteServer) -> Handler:
        async def write(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head, _, body = state.requests[-1].partition(b"\r\n\r\n")
            writer.write(canned(200, b'{"success":true}', "application/json"))
            await writer.drain()
            received.append((head, body + await reader.read()))
            if len(received) == count:
                done.set()
        return write
    return answer


@pytest.mark.parametrize("size", _large_media_sizes())
async def test_a_large_media_body_arrives_byte_exact_with_its_length(size: int) -> None:
    audio = (MP3 + bytes(range(256)) * (size // 256 + 1))[:size]
    media = Media.from_bytes(audio)
    numbers = (b"5511999999999", b"5511988888888")
    received: list[tuple[bytes, bytes]] = []
    done = asyncio.Event()
    async with byte_server(_exact_server(received, done, len(numbers))) as server:
        async with RyzeClient(token="t", instance="i", base_url=server.url, allow_http=True,
                              rate_limit=None, timeout=10) as client:
            for number in numbers:  # the same media sent twice
                await client.audio_call(number.decode(), media=media)
        await asyncio.wait_for(done.wait(), 10)  # the client closed: each handler saw the end
    b64 = base64.b64encode(audio)
    for (head, body), number in zip(received, numbers, strict=True):
        expected = b'{"number":"' + number + b'","mediaBase64":"' + b64 + b'"}'
        assert body == expected
        headers = head.lower().split(b"\r\n")
        assert b"content-length: %d" % len(expected) in headers
        assert not any(h.startswith(b"transfer-encoding") for h in headers)
        assert b"content-type: application/json" in headers


async def test_a_large_media_body_arrives_whole_at_the_fake_server(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    audio = MP3 + bytes(range(256)) * 512
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


# -- a new number without phonenumbers.parse (issue 18) ------------------------------------------

# Every region's example numbers of every type, with their country code: real numbering plans,
# national prefixes and leading zeros included.
_EXAMPLES = sorted({
    phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)[1:]
    for region in phonenumbers.SUPPORTED_REGIONS
    for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
                 phonenumbers.PhoneNumberType.TOLL_FREE, phonenumbers.PhoneNumberType.VOIP)
    if (example := phonenumbers.example_number_for_type(region, kind)) is not None
})
# The same as (country code, national significant number).
_EXAMPLE_PARTS = sorted({
    (str(parsed.country_code), phonenumbers.national_significant_number(parsed))
    for parsed in (phonenumbers.parse("+" + example) for example in _EXAMPLES)
})
# Digits as people and files hold them: real numbers, each digit changed, cut or lengthened,
# country codes followed by national prefixes, and plain random digits.
_DIGIT_STRINGS = st.one_of(
    st.sampled_from(_EXAMPLES),
    st.tuples(st.sampled_from(_EXAMPLES), st.integers(0, 20), st.text("0123456789", max_size=3))
    .map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):]),
    st.tuples(st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
              st.sampled_from(["", "0", "00", "1", "8", "9", "90", "15", "021", "0800"]),
              st.text("0123456789", min_size=0, max_size=15))
    .map(lambda t: f"{t[0]}{t[1]}{t[2]}"),
    st.text("0123456789", min_size=0, max_size=22),
    # A valid number with a national (trunk) prefix between its country code and the rest:
    # parse strips one where the country's rules say so ("+1 1 650..." is +1 650...).
    st.tuples(st.sampled_from(_EXAMPLE_PARTS),
              st.sampled_from(["0", "1", "2", "7", "8", "9", "01", "06", "90", "15", "021"]))
    .map(lambda t: f"{t[0][0]}{t[1]}{t[0][1]}"),
)


def _reference_e164(text: str, region: str | None, check: str) -> str | None:
    """One reading as the client made it before its fast paths: libphonenumber's parse, its
    validity (or possibility), its E.164 format, at most 15 digits."""
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if parsed.extension:
        return None
    if check == "valid":
        ok = phonenumbers.is_valid_number(parsed)
    else:
        ok = (phonenumbers.is_possible_number_with_reason(parsed)
              == phonenumbers.ValidationResult.IS_POSSIBLE
              and phonenumbers.region_code_for_country_code(parsed.country_code or 0) != "ZZ")
    if not ok:
        return None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]
    return e164 if len(e164) <= 15 else None


def _reference(text: str, region: str | None, check: str) -> str | None:
    """What normalize_number returned before (None: refused), for digits, "+" and blanks."""
    if text.startswith("+"):
        return _reference_e164(text, None, check)
    if region is None:
        return _reference_e164("+" + text, None, check)
    digits = "".join(ch for ch in text if ch.isdigit())
    return _reference_e164(text, region, check) or _reference_e164("+" + digits, None, check)


@settings(max_examples=4000, deadline=None, database=None)
@given(digits=_DIGIT_STRINGS, form=st.sampled_from(["+{}", "{}", " +{} ", "+{} {}"]),
       check=st.sampled_from(["valid", "possible"]),
       region=st.sampled_from([None, None, "BR", "US", "DE", "IT"]))
def test_a_new_number_normalises_as_libphonenumber_reads_it(
    digits: str, form: str, check: Literal["valid", "possible"], region: str | None
) -> None:
    # "+digits" and bare digits take the fast paths; "+55 11..." (a blank after two digits)
    # goes through parse and the validity with compiled patterns, leading zeros (Italy's)
    # included. Either way the answer is libphonenumber's.
    text = form.format(digits[:2], digits[2:]) if form == "+{} {}" else form.format(digits)
    try:
        normalised: str | None = normalize_number(text, default_region=region, number_check=check)
    except InvalidRequestError:
        normalised = None
    assert normalised == _reference(text.strip(), region, check)


def test_every_example_number_and_its_neighbours_read_as_libphonenumber_reads_them() -> None:
    # Every country's example of every kind, with and without "+", and each with one digit
    # changed, one dropped and one added: the one-pattern check of a usual number (#18) against
    # parse and is_valid_number, valid and invalid alike, in every numbering plan.
    texts = set()
    for example in _EXAMPLES:
        texts.update((example, example[:-1], example + "7"))
        texts.update(example[:i] + str((int(example[i]) + 1) % 10) + example[i + 1:]
                     for i in range(len(example)))
    wrong = []
    for digits in sorted(texts):
        for text in (digits, "+" + digits):
            try:
                normalised: str | None = normalize_number(text)
            except InvalidRequestError:
                normalised = None
            if normalised != _reference(text, None, "valid"):
                wrong.append(text)
    assert wrong == []
    assert len(texts) > 9_000


def test_new_numbers_of_the_big_plans_skip_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fast path must serve what campaigns hold, not only exist: a new number written with its
    # country code (with or without "+") reaches phonenumbers.parse only when the fast path
    # cannot read it.
    calls: list[str] = []
    parse = phonenumbers.parse

    def counted(text: str, region: str | None = None) -> phonenumbers.PhoneNumber:
        calls.append(text)
        return parse(text, region)

    monkeypatch.setattr(phonenumbers, "parse", counted)
    wanted = {
        "+5511987650001": "5511987650001", "5511987650002": "5511987650002",
        "+14155550100": "14155550100", "+447400123456": "447400123456",
        "+919876543210": "919876543210", "+4915123456789": "4915123456789",
        "+525512345678": "525512345678", "+628123456789": "628123456789",
        "+33612345678": "33612345678",
    }
    for raw, wire in wanted.items():
        assert normalize_number(raw) == wire
    assert calls == []


_RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@settings(max_examples=400, deadline=None, database=None)
@given(raw=st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"])),
    st.from_regex(r"\s*[-+]?[0-9_]*\.?[0-9_]*(e[-+]?[0-9]+)?\s*", fullmatch=True),
    st.sampled_from(["inf", " nan ", "1e400", "\u00a042\u2003", "\x1c7\x1f", "0x10", "\u0661"]),
), name=st.sampled_from(_RATE_HEADERS))
def test_a_rate_limit_header_reads_as_its_stripped_text(raw: str, name: str) -> None:
    # Every blank str.strip() removes is ignored (float() alone refuses "0\x1f"); a value that
    # is no finite number is absent.
    try:
        value: float | None = float(raw.strip())
    except ValueError:
        value = None
    expected = value if value is not None and math.isfinite(value) else None
    transport = MockTransport(lambda _r: MockResponse(200, {"success": True}, {name: raw}))

    async def main() -> CallResult:
        async with RyzeClient(token="t", instance="i", rate_limit=None,
                              transport=transport) as client:
            return await client.fake_call("+5511987650001")

    info = run_virtual(main()).rate_limit
    if expected is None:
        assert info is None
        return
    assert info is not None
    field = name.rsplit("-", 1)[1].lower()
    read = {key: got for key, got in info.model_dump().items() if got is not None}
    assert read == {field: expected if field == "reset" else int(expected)}
