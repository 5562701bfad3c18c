"""A throw-away certificate authority for TLS tests, made with the ``openssl`` command.

``make_pki(dir)`` writes a CA (``ca.pem``), a server certificate for 127.0.0.1 signed by it
(``server.pem``/``server.key``), and a second, unrelated CA (``other-ca.pem``): the CA a client
that trusts the wrong authority holds. ``names`` are the server certificate's names instead
of 127.0.0.1 (``DNS:localhost``: a client that reaches 127.0.0.1 by address then sees the wrong
name). Tests using it run a subprocess: mark them infra.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
_CA_EXT = ["-addext", "basicConstraints=critical,CA:TRUE",
           "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
_SERVER_EXT = """\
subjectAltName={names}
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage={usage}
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
"""


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path

    def server_context(self, *, max_tls12: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        if max_tls12:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        return context


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(name: str, cwd: Path) -> None:
    _openssl("req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN={name}", *_CA_EXT, cwd=cwd)


def make_pki(
    directory: Path, names: str = "IP:127.0.0.1", *, client_too: bool = False
) -> Pki:
    """`client_too`: the server certificate also serves as a client's (a Redis Cluster's nodes
    present theirs to each other on the cluster bus, where the peer always checks it)."""
    if shutil.which("openssl") is None:  # pragma: no cover - the image has it
        raise RuntimeError("the openssl command is needed to make test certificates")
    _ca("ca", directory)
    _ca("other-ca", directory)
    usage = "serverAuth,clientAuth" if client_too else "serverAuth"
    (directory / "server.ext").write_text(_SERVER_EXT.format(names=names, usage=usage),
                                          encoding="ascii")
    _openssl("req", *_EC, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
             cwd=directory)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
             cwd=directory)
    return Pki(directory / "ca.pem", directory / "other-ca.pem", directory / "server.pem",
               directory / "server.key")
