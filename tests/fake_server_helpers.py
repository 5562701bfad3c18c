"""Talking to the fake server with a plain aiohttp session: what the fake-server tests share."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from yarl import URL

from ryze_async.testing import FakeRyzeServer

TOKEN = "test-token"
AUDIO = {"number": "5511999999999", "mediaUrl": "https://example.com/m.mp3"}


class FakeClock:
    """A server clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Reply:
    """What the client saw."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def message(self) -> str:
        message: str = self.json()["error"]["message"]
        return message

    def json(self) -> Any:
        return json.loads(self.body)

    def rate(self) -> tuple[int, int, int]:
        return (
            int(self.headers["X-RateLimit-Limit"]),
            int(self.headers["X-RateLimit-Remaining"]),
            int(self.headers["X-RateLimit-Reset"]),
        )


async def call(
    session: aiohttp.ClientSession,
    server: FakeRyzeServer,
    body: Any = None,
    *,
    route: str = "audio",
    instance: str = "my-instance",
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    **kwargs: Any,
) -> Reply:
    sent = dict(headers or {})
    if token is not None:
        sent["token"] = token
    url = URL(f"{server.url}/api/call/{route}/{instance}", encoded=True)
    json_body = (AUDIO if body is None else body) if raw is None else None
    async with session.post(url, json=json_body, data=raw, headers=sent, **kwargs) as resp:
        return Reply(resp.status, resp.headers.copy(), await resp.read())
