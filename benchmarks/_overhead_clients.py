"""The client variants benchmarks/overhead.py compares, and the bodies they all post.

Raw aiohttp and httpx post the same pre-built body with the same headers on one session and read
the JSON answer; ryze_async builds, validates and interprets every call itself, with its quota
lifted (``rate_limit=None``). Every variant uses ryze_async's default connection policy, a fresh
connection per call (#7.6), except those labelled ``pooled``, which keep connections alive: the
pair shows what the policy itself costs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Awaitable, Callable
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
    wire: bytes  # what raw aiohttp and httpx post
    ryze_kwargs: dict[str, dict[str, Any]]  # variant label -> call keyword arguments
    endpoint: str = "audio"  # "fake": fake_call, else audio_call


Close = Callable[[], Awaitable[None]]
Opener = Callable[[str, Body, str], Awaitable[tuple[Call, Close]]]


async def open_ryze(url: str, body: Body, variant: str) -> tuple[Call, Close]:
    keepalive = 1.0 if variant.endswith(POOLED) else 0.0
    client = RyzeClient(TOKEN, INSTANCE, base_url=url, rate_limit=None,
                        keepalive_timeout=keepalive)
    kwargs = body.ryze_kwargs[variant]
    place = client.fake_call if body.endpoint == "fake" else client.audio_call

    async def call() -> None:
        result = await place(NUMBER, **kwargs)
        if not (isinstance(result, CallResult) and result.success):
            raise RuntimeError(f"not placed: {result!r}")

    return call, client.aclose


async def open_aiohttp(url: str, body: Body, variant: str) -> tuple[Call, Close]:
    # The same policy as ryze_async's default: a fresh connection per call.
    connector = aiohttp.TCPConnector(force_close=not variant.endswith(POOLED))
    session = aiohttp.ClientSession(connector=connector)
    endpoint = f"{url}/api/call/{body.endpoint}/{INSTANCE}"
    wire = body.wire

    async def call() -> None:
        async with session.post(endpoint, data=wire, headers=HEADERS) as response:
            data = await response.json()
            if response.status != 200 or data.get("success") is not True:
                raise RuntimeError(f"not placed: {response.status}")

    return call, session.close


async def open_httpx(url: str, body: Body, _: str) -> tuple[Call, Close]:
    client = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0))
    endpoint = f"{url}/api/call/{body.endpoint}/{INSTANCE}"
    wire = body.wire

    async def call() -> None:
        response = await client.post(endpoint, content=wire, headers=HEADERS)
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
            call, close = await open_ryze(url, body, variant)
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
        json.dumps({"number": NUMBER, "duration": 10}, separators=(",", ":")).encode(),
        {"ryze_async fake_call": {"duration": 10},
         "ryze_async fake_call" + POOLED: {"duration": 10}},
        endpoint="fake",
    )


def make_bodies() -> tuple[Body, Body, Media]:
    small = Body(
        "media_url (small body)",
        json.dumps({"number": NUMBER, "mediaUrl": MEDIA_URL}, separators=(",", ":")).encode(),
        {"ryze_async media_url=str": {"media_url": MEDIA_URL},
         "ryze_async media=Media": {"media": Media.from_url(MEDIA_URL)},
         "ryze_async media=Media" + POOLED: {"media": Media.from_url(MEDIA_URL)}},
    )
    audio = b"ID3\x04\x00\x00\x00\x00\x00\x00" + random.Random(1).randbytes(FILE_SIZE - 10)
    prepared = Media.from_bytes(audio)
    b64 = base64.b64encode(audio).decode()
    big = Body(
        "1 MiB file (mediaBase64)",
        json.dumps({"number": NUMBER, "mediaBase64": b64}, separators=(",", ":")).encode(),
        {"ryze_async media=Media": {"media": prepared},
         "ryze_async media=bytes": {"media": audio},
         "ryze_async media=Media" + POOLED: {"media": prepared}},
    )
    return small, big, prepared
