"""TLS settings (issue 18): ``RyzeClient(ssl=...)``, ``--ca-file``/``RYZE_CA_FILE``, against a
loopback TLS server with its own CA; the token never reaches a server that failed verification.

The certificates are made by the ``openssl`` command (a subprocess): those tests are infra.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ryze_async import ConnectionFailedError, InvalidRequestError, RyzeClient
from ryze_async.testing import FakeRyzeServer, MockRequest, MockResponse, MockTransport

from .audio import MP3
from .cli_helpers import run_cli
from .tls_certs import Pki, make_pki

TOKEN = "test-token"
OTHER_TOKEN = "other-token-123"
NUMBER = "+5511987654321"
_APPLICATION_DATA = 23  # TLS record content type


# -- settings refused at construction (no TLS server needed) -----------------------------------


def test_ssl_false_alone_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="insecure_skip_verify") as caught:
        RyzeClient(TOKEN, "my-instance", ssl=False)
    assert caught.value.field == "ssl"


@pytest.mark.parametrize("value", [None, True, "ca.pem"])
def test_insecure_skip_verify_needs_ssl_false(value: object, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="ssl=False"):
        RyzeClient(TOKEN, "my-instance", ssl=value, insecure_skip_verify=True)  # type: ignore[arg-type]


def test_ssl_false_with_the_opt_in_warns_once_per_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="ryze_async"):
        client = RyzeClient(TOKEN, "my-instance", ssl=False, insecure_skip_verify=True)
        client.with_options(max_wait=1.0)
    warnings = [r for r in caplog.records if "NOT verified" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("content", [b"", b"not a certificate\n",
                                     b"-----BEGIN CERTIFICATE-----\nAAAA\n"
                                     b"-----END CERTIFICATE-----\n"])
def test_a_ca_file_that_holds_no_certificate_is_refused(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    with pytest.raises(InvalidRequestError, match=r"bad\.pem") as caught:
        RyzeClient(TOKEN, "my-instance", ssl=bad)
    assert caught.value.field == "ssl"


def test_a_missing_ca_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match=r"no-such\.pem does not exist"):
        RyzeClient(TOKEN, "my-instance", ssl=str(tmp_path / "no-such.pem"))


def test_an_empty_ca_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="no certificate"):
        RyzeClient(TOKEN, "my-instance", ssl=tmp_path)


@pytest.mark.parametrize("value", [123, b"/etc/ssl/ca.pem", ""])
def test_ssl_of_another_kind_is_refused(value: object) -> None:
    with pytest.raises(InvalidRequestError, match="ssl"):
        RyzeClient(TOKEN, "my-instance", ssl=value)  # type: ignore[arg-type]


def test_ssl_with_a_transport_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(request: MockRequest) -> MockResponse:
        raise AssertionError("nothing is sent")

    with pytest.raises(InvalidRequestError, match="transport"):
        RyzeClient(TOKEN, "my-instance", ssl=ssl.create_default_context(),
                   transport=MockTransport(never))
    # RYZE_CA_FILE is the built-in transport's: a transport of the caller's does not read it.
    monkeypatch.setenv("RYZE_CA_FILE", "/nonexistent/ca.pem")
    RyzeClient(TOKEN, "my-instance", transport=MockTransport(never))


def test_ryze_ca_file_is_read_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RYZE_CA_FILE", str(tmp_path / "gone.pem"))
    with pytest.raises(InvalidRequestError, match=r"gone\.pem"):
        RyzeClient(TOKEN, "my-instance")


@pytest.mark.parametrize("command", [
    ["call", NUMBER, "--media-base64", "AAAA"], ["fake-call", NUMBER],
])
async def test_cli_ca_file_missing_exits_2(command: list[str], tmp_path: Path) -> None:
    code, _, err = await run_cli(
        [*command, "--ca-file", str(tmp_path / "gone.pem")],
        {"RYZE_TOKEN": TOKEN, "RYZE_INSTANCE": "my-instance",
         "RYZE_BASE_URL": "https://127.0.0.1:9"})
    assert code == 2, err
    assert "gone.pem does not exist" in err
    assert TOKEN not in err


async def test_cli_campaign_ca_file_missing_exits_2(tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.csv"
    numbers.write_text(f"{NUMBER}\n", encoding="utf-8")
    code, _, err = await run_cli(
        ["campaign", str(numbers), "--fake", "--journal", str(tmp_path / "j.db"),
         "--ca-file", str(tmp_path / "gone.pem")],
        {"RYZE_TOKEN": TOKEN, "RYZE_INSTANCE": "my-instance",
         "RYZE_BASE_URL": "https://127.0.0.1:9"})
    assert code == 2, err
    assert "gone.pem does not exist" in err
    assert not (tmp_path / "j.db").exists()


# -- against a loopback TLS server with its own CA (openssl: infra) ---------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[FakeRyzeServer]:
    server = FakeRyzeServer(ssl_context=pki.server_context(), tokens=[OTHER_TOKEN],
                            instances=("my-instance", "other"))
    async with server:
        yield server


@contextlib.asynccontextmanager
async def _client(server: FakeRyzeServer, **kwargs: object) -> AsyncIterator[RyzeClient]:
    client = RyzeClient(TOKEN, "my-instance", base_url=server.url, **kwargs)  # type: ignore[arg-type]
    async with client:
        yield client


@pytest.mark.infra
async def test_tls_fake_server_has_an_https_url(tls_server: FakeRyzeServer) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")


@pytest.mark.infra
@pytest.mark.parametrize("form", ["str", "path", "context", "directory"])
async def test_the_call_is_placed_with_the_servers_ca(
    tls_server: FakeRyzeServer, pki: Pki, form: str, tmp_path: Path
) -> None:
    setting: object = {
        "str": str(pki.ca), "path": pki.ca,
        "context": ssl.create_default_context(cafile=pki.ca),
        "directory": _hashed_ca_dir(pki.ca, tmp_path),
    }[form]
    async with _client(tls_server, ssl=setting) as client:
        result = await asyncio.wait_for(client.fake_call(NUMBER), 20)
    assert result.call_id
    assert len(tls_server.placed_calls) == 1


@pytest.mark.infra
@pytest.mark.parametrize("trust", ["system", "other-ca"])
async def test_a_certificate_that_fails_is_not_sent_and_not_retried(
    tls_server: FakeRyzeServer, pki: Pki, trust: str
) -> None:
    kwargs = {} if trust == "system" else {"ssl": pki.other_ca}
    async with _client(tls_server, max_retries=3, **kwargs) as client:
        with pytest.raises(ConnectionFailedError) as caught:
            await asyncio.wait_for(client.fake_call(NUMBER), 20)
    # Proven not sent (the handshake ends before a byte of the request), but not retried: a
    # certificate does not become valid on the next attempt.
    assert caught.value.retryable is False
    assert "certificate of 127.0.0.1" in str(caught.value)
    assert "failed verification" in str(caught.value)
    assert "nothing was sent" in str(caught.value)
    assert "ssl=" in str(caught.value)  # where to give the server's CA
    assert TOKEN not in str(caught.value)
    assert tls_server.requests == []
    assert tls_server.connections_accepted == 1


@pytest.mark.infra
async def test_insecure_skip_verify_places_the_call(tls_server: FakeRyzeServer) -> None:
    async with _client(tls_server, ssl=False, insecure_skip_verify=True) as client:
        await asyncio.wait_for(client.fake_call(NUMBER), 20)
    assert len(tls_server.placed_calls) == 1


@pytest.mark.infra
async def test_views_and_senders_keep_the_ca(tls_server: FakeRyzeServer, pki: Pki) -> None:
    async with _client(tls_server, ssl=pki.ca) as client:
        await asyncio.wait_for(client.with_options(max_wait=5.0).fake_call(NUMBER), 20)
        async with client.for_sender(OTHER_TOKEN, "other") as sender:
            await asyncio.wait_for(sender.fake_call(NUMBER), 20)
    assert [r.headers["token"] for r in tls_server.placed_calls] == [TOKEN, OTHER_TOKEN]


@dataclass
class _Relay:
    """A plain TCP relay recording every byte the client sent, before any TLS is undone."""

    port: int = 0
    from_client: bytearray = field(default_factory=bytearray)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                record: bytearray | None) -> None:
    try:
        while chunk := await reader.read(65536):
            if record is not None:
                record.extend(chunk)
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def _relay_to(port: int) -> AsyncIterator[_Relay]:
    relay = _Relay()
    tasks: set[asyncio.Task[None]] = set()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(_pipe(client_r, server_w, relay.from_client),
                             _pipe(server_r, client_w, None))

    def spawn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    listener = await asyncio.start_server(spawn, "127.0.0.1", 0)
    relay.port = listener.sockets[0].getsockname()[1]
    try:
        yield relay
    finally:
        listener.close()
        await listener.wait_closed()
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks, return_exceptions=True)


def _record_types(stream: bytes) -> list[int]:
    """The content type of each TLS record in ``stream`` (5-byte headers, length-prefixed)."""
    types, at = [], 0
    while at + 5 <= len(stream):
        types.append(stream[at])
        at += 5 + int.from_bytes(stream[at + 3:at + 5], "big")
    assert at == len(stream), "the stream is not whole TLS records"
    return types


@pytest.mark.infra
@pytest.mark.parametrize("trusted", [True, False])
async def test_no_byte_of_the_request_leaves_before_the_certificate_is_verified(
    pki: Pki, trusted: bool
) -> None:
    # TLS 1.2 at most: there, every record the client writes before verifying the server's
    # certificate is plaintext (handshake, alert); application data (the request) comes only
    # after. (TLS 1.3 encrypts the handshake's end too, so its record types prove nothing.)
    server = FakeRyzeServer(ssl_context=pki.server_context(max_tls12=True))
    async with server, _relay_to(server.port) as relay:
        url = f"https://127.0.0.1:{relay.port}"
        client = RyzeClient(TOKEN, "my-instance", base_url=url,
                            **({"ssl": pki.ca} if trusted else {}))  # type: ignore[arg-type]
        async with client:
            if trusted:
                await asyncio.wait_for(client.fake_call(NUMBER), 20)
            else:
                with pytest.raises(ConnectionFailedError):
                    await asyncio.wait_for(client.fake_call(NUMBER), 20)
    types = _record_types(bytes(relay.from_client))
    assert types[0] == 22  # the ClientHello: the relay saw the connection
    assert (_APPLICATION_DATA in types) is trusted  # the positive case proves the check can fail
    assert len(server.requests) == (1 if trusted else 0)


@pytest.mark.infra
@pytest.mark.parametrize("command", ["fake-call", "call"])
@pytest.mark.parametrize("how", ["flag", "env"])
async def test_cli_ca_file_places_the_call(
    tls_server: FakeRyzeServer, pki: Pki, command: str, how: str, tmp_path: Path
) -> None:
    media = tmp_path / "message.mp3"
    media.write_bytes(MP3)
    args = [command, NUMBER, *(["--media", str(media)] if command == "call" else []), "--json"]
    env = {"RYZE_TOKEN": TOKEN, "RYZE_INSTANCE": "my-instance", "RYZE_BASE_URL": tls_server.url}
    if how == "flag":
        args += ["--ca-file", str(pki.ca)]
    else:
        env["RYZE_CA_FILE"] = str(pki.ca)
    code, _, err = await run_cli(args, env)
    assert code == 0, err
    assert len(tls_server.placed_calls) == 1


@pytest.mark.infra
async def test_cli_campaign_pool_uses_the_ca_file(
    tls_server: FakeRyzeServer, pki: Pki, tmp_path: Path
) -> None:
    numbers = tmp_path / "numbers.csv"
    numbers.write_text(f"{NUMBER}\n+5511987654322\n+5511987654323\n", encoding="utf-8")
    senders = tmp_path / "senders.csv"
    senders.write_text(f"instance,token\nmy-instance,{TOKEN}\nother,{OTHER_TOKEN}\n",
                       encoding="utf-8")
    senders.chmod(0o600)
    code, _, err = await run_cli(
        ["campaign", str(numbers), "--fake", "--journal", str(tmp_path / "j.db"),
         "--senders", str(senders), "--ca-file", str(pki.ca)],
        {"RYZE_BASE_URL": tls_server.url})
    assert code == 0, err
    assert len(tls_server.placed_calls) == 3


def _hashed_ca_dir(ca: Path, tmp_path: Path) -> Path:
    """A directory in OpenSSL's ``capath`` layout: the CA under ``<subject hash>.0``."""
    digest = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca)], check=True,
                            capture_output=True, text=True, timeout=30).stdout.strip()
    directory = tmp_path / "cas"
    directory.mkdir()
    (directory / f"{digest}.0").write_bytes(ca.read_bytes())
    return directory


@pytest.fixture(autouse=True)
def _no_ryze_ca_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RYZE_CA_FILE", raising=False)



@pytest.mark.infra
async def test_cli_campaign_without_the_ca_sends_nothing_and_keeps_numbers_pending(
    tls_server: FakeRyzeServer, pki: Pki, tmp_path: Path
) -> None:
    numbers = tmp_path / "numbers.csv"
    numbers.write_text(f"{NUMBER}\n+5511987654322\n", encoding="utf-8")
    journal = tmp_path / "j.db"
    env = {"RYZE_TOKEN": TOKEN, "RYZE_INSTANCE": "my-instance", "RYZE_BASE_URL": tls_server.url}
    code, out, err = await run_cli(
        ["campaign", str(numbers), "--fake", "--journal", str(journal), "--json"], env)
    summary = json.loads(out.splitlines()[-1])
    assert code == 3, err  # the circuit breaker
    assert (summary["pending"], summary["unknown"], summary["placed"]) == (2, 0, 0)
    assert tls_server.requests == []
    assert TOKEN not in out + err
    resumed, _, err = await run_cli(
        ["campaign", str(numbers), "--fake", "--journal", str(journal),
         "--ca-file", str(pki.ca)], env)
    assert resumed == 0, err
    assert len(tls_server.placed_calls) == 2


@pytest.mark.infra
async def test_tls_keeps_one_connection_per_call(tls_server: FakeRyzeServer, pki: Pki) -> None:
    async with _client(tls_server, ssl=pki.ca) as client:
        for _ in range(2):
            await asyncio.wait_for(client.fake_call(NUMBER), 20)
    assert tls_server.connections_accepted == 2
    assert len({r.connection_id for r in tls_server.requests}) == 2
