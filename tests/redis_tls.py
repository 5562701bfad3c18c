"""A redis-server (and a Redis Cluster, and a Sentinel set) that accepts TLS connections only, with
the ACL user the docs prescribe.

The server's certificate is for ``localhost`` (``tls_certs.make_pki``): a client that reaches it
by address sees the wrong name. The ACL rule is read from docs/scale-out-infra.md (its
``ACL SETUSER ryze`` line), so the tests prove the rule users are told to copy. The ``default``
user keeps a password of its own, for the test's admin connection only. Starts a program: infra.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ryze_async.testing import RedisServer
from ryze_async.testing._redis_server import REDIS_SERVER, LocalCluster, SentinelSet

from .tls_certs import Pki, make_pki

__all__ = ["ACL_PASSWORD", "SENTINEL_PASSWORD", "TlsCluster", "TlsRedis", "TlsSentinels",
           "acl_rule", "tls_cluster", "tls_redis", "tls_sentinels"]

ROOT = Path(__file__).resolve().parent.parent
ACL_PASSWORD = "Acl-Redis-pw-7Qx41zK"
_ADMIN_PASSWORD = "Admin-pw-never-used-by-ryze"
SENTINEL_PASSWORD = "K9s-Sp-4wZ-3Rv62mTq"


def acl_rule(password: str = ACL_PASSWORD) -> list[str]:
    """The docs' ``ACL SETUSER ryze ...`` line, split, with `password` in place."""
    text = (ROOT / "docs" / "scale-out-infra.md").read_text(encoding="utf-8")
    found = re.search(r"^ACL SETUSER ryze .*$", text, re.MULTILINE)
    if found is None:
        raise AssertionError("docs/scale-out-infra.md has no 'ACL SETUSER ryze' line")
    return [f">{password}" if word.startswith(">") else word for word in found[0].split()]


@dataclass(frozen=True)
class TlsRedis:
    port: int
    pki: Pki

    def url(self, *, host: str = "localhost", password: str = ACL_PASSWORD,
            ca: Path | str | None = None) -> str:
        return (f"rediss://ryze:{password}@{host}:{self.port}/0"
                f"?ssl_ca_certs={self.pki.ca if ca is None else ca}")


def _command(port: int, pki: Pki, *words: str) -> bytes:
    """One command as the admin, over TLS (RESP by hand: no client library involved)."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    with socket.create_connection(("localhost", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as conn:
        for command in (("AUTH", "default", _ADMIN_PASSWORD), words):
            conn.sendall(f"*{len(command)}\r\n".encode()
                         + b"".join(f"${len(w.encode())}\r\n{w}\r\n".encode() for w in command))
            reply = conn.recv(4096)
            if reply.startswith(b"-"):
                raise RuntimeError(reply.decode(errors="replace").strip())
        return reply


@contextmanager
def tls_redis(directory: Path) -> Iterator[TlsRedis]:
    pki = make_pki(directory, "DNS:localhost")
    port = RedisServer().port  # a free loopback port
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
         "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "no", "--save", "",
         "--appendonly", "no", "--requirepass", _ADMIN_PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _command(port, pki, *acl_rule())
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server with TLS did not start") from None
                time.sleep(0.05)
        yield TlsRedis(port, pki)
    finally:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class TlsCluster:
    cluster: LocalCluster
    pki: Pki

    def url(self, *, password: str = ACL_PASSWORD) -> str:
        return self.cluster.url(scheme="rediss+cluster", auth=f"ryze:{password}@",
                                query=f"ssl_ca_certs={self.pki.ca}")


@contextmanager
def tls_cluster(directory: Path) -> Iterator[TlsCluster]:
    """A Redis Cluster of three masters that accepts TLS only (its bus too), with the docs'
    ACL user on every node. The nodes announce 127.0.0.1: the certificate names it."""
    pki = make_pki(directory, "DNS:localhost,IP:127.0.0.1", client_too=True)
    cluster = LocalCluster(
        directory,
        server_args=["--tls-cert-file", str(pki.server_cert), "--tls-key-file",
                     str(pki.server_key), "--tls-ca-cert-file", str(pki.ca),
                     "--tls-auth-clients", "no", "--tls-cluster", "yes",
                     "--requirepass", _ADMIN_PASSWORD],
        cli_args=["--tls", "--cacert", str(pki.ca)], cli_env={"REDISCLI_AUTH": _ADMIN_PASSWORD})
    with cluster:
        for port in cluster.ports:
            cluster.cli(port, *acl_rule())
        yield TlsCluster(cluster, pki)


@dataclass(frozen=True)
class TlsSentinels:
    sentinels: SentinelSet
    pki: Pki

    def url(self, *, password: str = ACL_PASSWORD, host: str = "127.0.0.1",
            ca: Path | str | None = None, sentinel_password: str | None = SENTINEL_PASSWORD
            ) -> str:
        """The quota URL as the ACL user; `sentinel_password` None: without one."""
        query = f"ssl_ca_certs={self.pki.ca if ca is None else ca}"
        if sentinel_password is not None:
            query += f"&sentinel_password={sentinel_password}"
        return self.sentinels.url(auth=f"ryze:{password}@", host=host, query=query)


@contextmanager
def tls_sentinels(directory: Path) -> Iterator[TlsSentinels]:
    """A Sentinel set (a master, a replica, three sentinels) that accepts TLS only, the
    sentinels included, with a password of their own, and the docs' ACL user on both data
    nodes (ACL rules are not replicated: the replica needs it when it is promoted). The
    certificate names 127.0.0.1 only, the address the sentinels announce the master by: a
    client that reaches the sentinels as ``localhost`` sees the wrong name."""
    pki = make_pki(directory)
    sentinels = SentinelSet(
        directory, password=_ADMIN_PASSWORD, sentinel_password=SENTINEL_PASSWORD,
        tls=["--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
             "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "no"],
        cli_args=["--tls", "--cacert", str(pki.ca)])
    with sentinels:
        for port in (sentinels.master, sentinels.replica):
            sentinels.cli(port, *acl_rule())
        yield TlsSentinels(sentinels, pki)
