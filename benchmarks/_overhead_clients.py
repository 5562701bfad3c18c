"""The client variants benchmarks/overhead.py compares, and the bodies they all post.

Every call of every variant goes to a number of its own (issue 18): a campaign or a bot never
repeats one, so ryze_async parses and validates a new number each time (no parse-cache hit),
and raw aiohttp and httpx build that call's JSON body (``json.dumps``; the 1 MiB body is spliced
around the number, as a script would with a pre-encoded file) with the same headers on one
session, and parse the JSON answer. ryze_async builds, validates and interprets every call
itself, with its quota lifted (``rate_limit=None``). Variants use ryze_async's default
connection policy, a fresh connection per call (#7.6), or, labelled ``pooled``, keep-alive
connections. With ``https``, every variant trusts the loopback server's own CA through an
``ssl.SSLContext`` (ryze_async: ``ssl=``).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
import json
import random
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

import ryze_async
from ryze_async import CallResult, Media, RyzeClient
from ryze_async import _media as media_module

TOKEN = "bench-token"
INSTANCE = "bench"
NUMBER = "5511999990001"
MEDIA_URL = "https://example.com/message.mp3"
FILE_SIZE = 1024 * 1024
RAW = "raw aiohttp"
RAW_POOLED = "raw aiohttp, pooled"
HTTPX = "httpx.AsyncClient"
POOLED = ", pooled"
HEADERS = {
    "token": TOKEN,
    "Content-Type": "application/json",
    "Accept": "application/json",
    "User-Agent": f"ryze-async/{ryze_async.__version__}",
}

Call = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Body:
    name: str
    fields: dict[str, Any]  # the body's fields but the number, in wire order after it
    ryze_kwargs: dict[str, dict[str, Any]]  # variant label -> call keyword arguments
    endpoint: str = "audio"  # "fake": fake_call, else audio_call
    splice: bool = False  # raw clients splice the number into pre-encoded bytes (1 MiB body)

    @functools.cached_property
    def wire(self) -> bytes:
        """The body for `NUMBER`: every number is as long, so every call's body is this long."""
        return self.encode(NUMBER)

    def encode(self, number: str) -> bytes:
        return json.dumps({"number": number, **self.fields}, separators=(",", ":")).encode()

    def builder(self) -> Callable[[str], bytes]:
        """How a raw client builds a call's body from its number."""
        if not self.splice:
            return self.encode
        head, tail = self.wire.split(NUMBER.encode(), 1)
        return lambda number: b"".join((head, number.encode(), tail))


Close = Callable[[], Awaitable[None]]
Opener = Callable[[str, Body, str, "ssl.SSLContext | None"], Awaitable[tuple[Call, Close]]]

_ranges = itertools.count(1)


def distinct_numbers() -> Iterator[str]:
    """Valid Brazilian mobile numbers, 13 digits, never one given out before in this process:
    each variant its own range, so no variant meets a number another already parsed."""
    base = next(_ranges) % 2000 * 50_000  # 8 digits: 2,000 ranges of 50,000
    return (f"55119{base + i % 50_000:08d}" for i in itertools.count())


async def open_ryze(url: str, body: Body, variant: str,
                    tls: ssl.SSLContext | None) -> tuple[Call, Close]:
    # Pooled: aiohttp's own keep-alive (15 s), the raw pooled variant's, so that no round
    # pays reconnects the other does not.
    keepalive = 15.0 if variant.endswith(POOLED) else 0.0
    client = RyzeClient(TOKEN, INSTANCE, base_url=url, rate_limit=None,
                        keepalive_timeout=keepalive, ssl=tls)
    kwargs = body.ryze_kwargs[variant]
    place = client.fake_call if body.endpoint == "fake" else client.audio_call
    numbers = distinct_numbers()

    async def call() -> None:
        result = await place(next(numbers), **kwargs)
        if not (isinstance(result, CallResult) and result.success):
            raise RuntimeError(f"not placed: {result!r}")

    return call, client.aclose


async def open_aiohttp(url: str, body: Body, variant: str,
                       tls: ssl.SSLContext | None) -> tuple[Call, Close]:
    connector = aiohttp.TCPConnector(force_close=not variant.endswith(POOLED),
                                     ssl=True if tls is None else tls)
    session = aiohttp.ClientSession(connector=connector)
    endpoint = f"{url}/api/call/{body.endpoint}/{INSTANCE}"
    build, numbers = body.builder(), distinct_numbers()

    async def call() -> None:
        async with session.post(endpoint, data=build(next(numbers)),
                                headers=HEADERS) as response:
            data = await response.json()
            if response.status != 200 or data.get("success") is not True:
                raise RuntimeError(f"not placed: {response.status}")

    return call, session.close


async def open_httpx(url: str, body: Body, _: str,
                     tls: ssl.SSLContext | None) -> tuple[Call, Close]:
    client = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0),
                               verify=True if tls is None else tls)
    endpoint = f"{url}/api/call/{body.endpoint}/{INSTANCE}"
    build, numbers = body.builder(), distinct_numbers()

    async def call() -> None:
        response = await client.post(endpoint, content=build(next(numbers)), headers=HEADERS)
        if response.status_code != 200 or response.json().get("success") is not True:
            raise RuntimeError(f"not placed: {response.status_code}")

    return call, client.aclose


def openers(body: Body) -> dict[str, Opener]:
    result: dict[str, Opener] = dict.fromkeys(body.ryze_kwargs, open_ryze)
    result[RAW] = open_aiohttp
    result[RAW_POOLED] = open_aiohttp
    result[HTTPX] = open_httpx
    return result


async def place_calls(call: Call, n: int, workers: int) -> None:
    """``n`` calls, shared out among ``workers`` tasks running at once."""
    if workers == 1:
        for _ in range(n):
            await call()
        return

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    share, extra = divmod(n, workers)
    await asyncio.gather(*(worker(share + (i < extra)) for i in range(workers)))


class Encodes:
    """Counts base64 encodes done by ryze_async's media module (a stand-in for its ``base64``)."""

    def __init__(self) -> None:
        self.count = 0

    def b64encode(self, data: bytes) -> bytes:
        self.count += 1
        return base64.b64encode(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(base64, name)


async def count_encodes(url: str, body: Body, calls: int) -> dict[str, int]:
    """base64 encodes per variant over ``calls`` calls (untimed: the counter costs a little)."""
    counter = Encodes()
    setattr(media_module, "base64", counter)  # noqa: B010 - swap the module's global for a while
    try:
        counts = {}
        for variant in body.ryze_kwargs:
            counter.count = 0
            call, close = await open_ryze(url, body, variant, None)
            try:
                await place_calls(call, calls, 1)
            finally:
                await close()
            counts[variant] = counter.count
        return counts
    finally:
        setattr(media_module, "base64", base64)  # noqa: B010


def make_fake_body() -> Body:
    return Body(
        "fake_call duration=10",
        {"duration": 10},
        {"ryze_async fake_call": {"duration": 10},
         "ryze_async fake_call" + POOLED: {"duration": 10}},
        endpoint="fake",
    )


def make_bodies() -> tuple[Body, Body, Media]:
    small = Body(
        "media_url (small body)",
        {"mediaUrl": MEDIA_URL},
        {"ryze_async media_url=str": {"media_url": MEDIA_URL},
         "ryze_async media=Media": {"media": Media.from_url(MEDIA_URL)},
         "ryze_async media=Media" + POOLED: {"media": Media.from_url(MEDIA_URL)}},
    )
    audio = b"ID3\x04\x00\x00\x00\x00\x00\x00" + random.Random(1).randbytes(FILE_SIZE - 10)
    prepared = Media.from_bytes(audio)
    b64 = base64.b64encode(audio).decode()
    big = Body(
        "1 MiB file (mediaBase64)",
        {"mediaBase64": b64},
        {"ryze_async media=Media": {"media": prepared},
         "ryze_async media=bytes": {"media": audio},
         "ryze_async media=Media" + POOLED: {"media": prepared}},
        splice=True,
    )
    return small, big, prepared
