"""The PostgreSQL journal over TLS, ``sslmode=verify-full`` with a private CA (issue 19).

A real PostgreSQL that accepts TLS connections only (``hostssl`` lines alone in its
``hba_file``), with a server certificate for ``localhost`` signed by a throw-away CA
(``tls_certs.py``). The journal's URL carries the libpq forms ``sslmode=verify-full`` and
``sslrootcert=/path/ca.pem`` (asyncpg reads both from the URL). A wrong CA, a wrong host name or a
missing CA file fails closed: a ``JournalError``, exit 2 as for any journal that cannot be
used, nothing sent, and no password in any output.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ryze_async import JournalError
from ryze_async._campaign.journal.postgres.store import PgStore
from ryze_async.testing import FakeRyzeServer, wav_tone

from .cli_helpers import run_cli
from .pg_cluster import PostgresUnavailableError, _as_user, pg_cluster
from .tls_certs import Pki, make_pki

asyncpg = pytest.importorskip("asyncpg")
pytestmark = pytest.mark.infra

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
TOKEN = "s3cr3t-token-VALUE-never-printed"
PASSWORD = "Tls-Db-pw-0815-never-shown"  # trust accepts it; it must never be printed


@dataclass(frozen=True)
class TlsPostgres:
    port: int
    pki: Pki

    def url(self, host: str = "localhost", ca: Path | str | None = None,
            mode: str = "verify-full") -> str:
        return (f"postgresql://postgres:{PASSWORD}@{host}:{self.port}/ryze?sslmode={mode}"
                f"&sslrootcert={self.pki.ca if ca is None else ca}")


def _own(root: Path, uid: int | None, gid: int | None) -> None:
    """The server's user must read its certificate and key (a key its own, mode 0600)."""
    for path in (root, *root.iterdir()):
        if uid is not None and gid is not None:
            os.chown(path, uid, gid)
    (root / "server.key").chmod(0o600)


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[TlsPostgres]:
    try:
        _, uid, gid = _as_user()
    except PostgresUnavailableError as exc:
        pytest.skip(str(exc))
    tmp = "/tmp" if uid is not None else None  # noqa: S108 - mkdtemp makes a fresh 0700 dir
    root = Path(tempfile.mkdtemp(prefix="ryze-pg-tls-", dir=tmp))
    try:
        pki = make_pki(root, names="DNS:localhost")
        hba = root / "hba.conf"
        hba.write_text("hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n")
        _own(root, uid, gid)
        options = (f"-c ssl=on -c ssl_cert_file={pki.server_cert} "
                   f"-c ssl_key_file={pki.server_key} -c hba_file={hba}")
        try:
            with pg_cluster(options=options) as dsn:
                yield TlsPostgres(int(urlsplit(dsn).port or 0), pki)
        except PostgresUnavailableError as exc:
            pytest.skip(str(exc))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(token=TOKEN, rate_limit=None)


def env_for(server: FakeRyzeServer) -> dict[str, str]:
    return {"RYZE_TOKEN": TOKEN, "RYZE_INSTANCE": "my-instance", "RYZE_BASE_URL": server.url}


def campaign_args(tmp_path: Path, url: str, count: int = 5) -> tuple[list[str], list[str]]:
    valid = [f"55119{i:08d}" for i in range(count)]
    numbers_csv = tmp_path / "numbers.csv"
    numbers_csv.write_text("number\n" + "\n".join(valid) + "\n")
    audio = tmp_path / "message.wav"
    audio.write_bytes(wav_tone(0.1))
    return valid, ["campaign", str(numbers_csv), "--media", str(audio), "--journal", url,
                   "--campaign", "tls", "--rate-limit", "50", "--rate-period", "1", "--json"]


async def test_a_campaign_runs_with_its_journal_over_tls_verify_full(
    tls_pg: TlsPostgres, server: FakeRyzeServer, tmp_path: Path
) -> None:
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(tls_pg.url(mode="disable"))  # the server takes TLS only
    valid, args = campaign_args(tmp_path, tls_pg.url())
    code, out, err = await run_cli(args, env_for(server))
    assert code == 0, err
    assert PASSWORD not in out + err
    assert json.loads(out.strip().splitlines()[-1])["placed"] == 5
    assert Counter(r.json["number"] for r in server.requests) == Counter(valid)
    code, out, err = await run_cli(["report", tls_pg.url(), "--campaign", "tls", "--json"],
                                   env_for(server))
    assert code == 0, err
    assert PASSWORD not in out + err
    assert json.loads(out)["placed"] == 5


BAD = {  # the URL, and what the one line of error says
    "another CA": (lambda t: t.url(ca=t.pki.other_ca), "unable to get local issuer"),
    "a name the certificate is not for": (lambda t: t.url(host="127.0.0.1"),
                                          "not valid for '127.0.0.1'"),
    "a missing CA file": (lambda t: t.url(ca=t.pki.ca.with_name("absent.pem")),
                          "No such file or directory: a file the URL names (sslrootcert"),
    "an unknown sslmode": (lambda t: t.url(mode="verify-all"), "sslmode"),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_an_unverified_server_fails_closed_without_the_password(
    case: str, tls_pg: TlsPostgres, server: FakeRyzeServer, tmp_path: Path
) -> None:
    make_url, says = BAD[case]
    url = make_url(tls_pg)
    with pytest.raises(JournalError) as caught:
        await PgStore.open(url, campaign="tls")
    assert PASSWORD not in str(caught.value)
    assert says in str(caught.value)
    _, args = campaign_args(tmp_path, url)
    for command in (args, ["report", url, "--campaign", "tls", "--json"]):
        code, out, err = await run_cli(command, env_for(server))
        assert code == 2, (command[0], out, err)
        assert PASSWORD not in out + err
        assert f"postgresql://postgres@{urlsplit(url).hostname}:{tls_pg.port}/ryze" in err
        assert len(err.strip().splitlines()) == 1  # one clear line, no traceback
        assert says in err
    assert server.requests == []  # nothing was sent
