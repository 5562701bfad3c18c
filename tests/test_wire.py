"""What goes over the wire for each input form, checked at the fake server."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ryze_async import CallResult, InvalidRequestError, Media, RyzeClient
from ryze_async.testing import FakeRyzeServer

from .audio import MP3
from .conftest import ClientFactory

B64 = base64.b64encode(MP3).decode()


@pytest.mark.parametrize(
    ("kwargs", "media_key", "media_value"),
    [
        ({"media_url": "https://example.com/m.mp3"}, "mediaUrl", "https://example.com/m.mp3"),
        ({"media_url": f"data:audio/mpeg;base64,{B64}"}, "mediaUrl",
         f"data:audio/mpeg;base64,{B64}"),
        ({"media_url": B64}, "mediaUrl", B64),
        ({"media_base64": B64}, "mediaBase64", B64),
        ({"media": MP3}, "mediaBase64", B64),
        ({"media": bytearray(MP3)}, "mediaBase64", B64),
        ({"media": Media.from_bytes(MP3)}, "mediaBase64", B64),
    ],
)
async def test_audio_call_body_path_and_headers(
    ryze_server: FakeRyzeServer, make_client: ClientFactory,
    kwargs: dict[str, object], media_key: str, media_value: str,
) -> None:
    client = make_client(ryze_server)
    result = await client.audio_call("+55 (11) 99999-9999", **kwargs)  # type: ignore[arg-type]

    assert isinstance(result, CallResult)
    assert result.success is True
    assert result.status == 200
    assert result.number == "5511999999999"
    assert result.call_id
    [request] = ryze_server.requests
    assert request.method == "POST"
    assert request.path == "/api/call/audio/my-instance"
    assert request.query == ""
    assert request.headers["token"] == "test-token"
    assert request.headers["Content-Type"] == "application/json"
    assert "Authorization" not in request.headers
    assert json.loads(request.body) == {"number": "5511999999999", media_key: media_value}
    assert b"null" not in request.body


async def test_media_from_path(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "m.mp3"
    path.write_bytes(MP3)
    client = make_client(ryze_server)
    await client.audio_call("5511999999999", media=path)
    await client.audio_call("5511999999999", media=str(path))
    bodies = [json.loads(r.body) for r in ryze_server.requests]
    assert bodies == [{"number": "5511999999999", "mediaBase64": B64}] * 2


async def test_fake_call_body(ryze_server: FakeRyzeServer, make_client: ClientFactory) -> None:
    client = make_client(ryze_server)
    with_duration = await client.fake_call("5511999999999", duration=12)
    default = await client.fake_call("5511999999999@s.whatsapp.net")

    assert with_duration.duration == 12
    assert default.duration == 8
    first, second = ryze_server.requests
    assert first.path == second.path == "/api/call/fake/my-instance"
    assert json.loads(first.body) == {"number": "5511999999999", "duration": 12}
    assert json.loads(second.body) == {"number": "5511999999999@s.whatsapp.net"}


async def test_instance_override_and_encoding(
    ryze_server_factory: object, make_client: ClientFactory
) -> None:
    server: FakeRyzeServer = await ryze_server_factory(  # type: ignore[operator]
        instances=("my-instance", "other one", "a/b", "ação")
    )
    client = make_client(server)
    await client.fake_call("5511999999999", instance="other one")
    await client.fake_call("5511999999999", instance="a/b")
    await client.fake_call("5511999999999", instance="ação")
    await client.fake_call("5511999999999", instance="a/b")  # back to one sent to before
    paths = [r.path for r in server.requests]
    assert paths == [
        "/api/call/fake/other%20one",
        "/api/call/fake/a%2Fb",
        "/api/call/fake/a%C3%A7%C3%A3o",
        "/api/call/fake/a%2Fb",
    ]
    assert [r.instance for r in server.requests] == ["other one", "a/b", "ação", "a/b"]


async def test_rate_limit_headers_are_reported(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    client = make_client(ryze_server)
    result = await client.fake_call("5511999999999")
    assert result.rate_limit is not None
    assert result.rate_limit.limit == 100
    assert result.rate_limit.remaining == 99
    assert result.rate_limit.reset is not None


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        ({"number": "123", "media": MP3}, "not a phone number"),
        ({"number": "1203630@g.us", "media": MP3}, "group"),
        ({"number": "5511999999999"}, "exactly one of media"),
        ({"number": "5511999999999", "media_url": "x", "media_base64": B64}, "exactly one"),
        ({"number": "5511999999999", "media": b"not audio at all"}, "does not look like audio"),
        ({"number": "5511999999999", "media": b""}, "empty"),
        ({"number": "5511999999999", "media_url": "ftp://x/y"}, "http\\(s\\) URL"),
        ({"number": "5511999999999", "media_base64": "@@"}, "not valid base64"),
        ({"number": "5511999999999", "media": 42}, "bytes, a file path or a Media"),
        ({"number": "5511999999999", "media": MP3, "instance": ".."}, "one path segment"),
        ({"number": "5511999999999", "media": MP3, "instance": ""}, "empty"),
    ],
)
async def test_invalid_audio_calls_send_nothing(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, call: dict[str, object], fragment: str
) -> None:
    client = make_client(ryze_server)
    with pytest.raises(InvalidRequestError, match=fragment):
        await client.audio_call(**call)  # type: ignore[arg-type]
    assert ryze_server.requests == []


@pytest.mark.parametrize("duration", [0, 61, -1, True, 1.5, "8"])
async def test_invalid_durations_send_nothing(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, duration: object
) -> None:
    client = make_client(ryze_server)
    with pytest.raises(InvalidRequestError, match="duration"):
        await client.fake_call("5511999999999", duration=duration)  # type: ignore[arg-type]
    assert ryze_server.requests == []


async def test_missing_instance_sends_nothing(ryze_server: FakeRyzeServer) -> None:
    async with RyzeClient(token="test-token", base_url=ryze_server.url, rate_limit=None) as client:
        with pytest.raises(InvalidRequestError, match="no instance"):
            await client.fake_call("5511999999999")
    assert ryze_server.requests == []
