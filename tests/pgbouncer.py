"""A throw-away PgBouncer (Debian's ``/usr/sbin/pgbouncer``) in front of a test PostgreSQL.

``pgbouncer(server_dsn, database, password)`` writes a configuration with the settings a
managed pooler has by default, but for ``pool_mode = transaction`` and a pool of ``pool_size``
server connections (small, so the clients really share them), starts PgBouncer in the
foreground on a free loopback port, and yields the client DSN (with ``password``, checked by
PgBouncer's md5 auth from its ``auth_file``). Nothing else is set: in particular
``ignore_startup_parameters`` keeps its default (empty), as on managed poolers.

PgBouncer refuses to run as root: as root it runs as the ``postgres`` system user (as the
cluster does, ``pg_cluster.py``). Tests using it start a program: mark them infra.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from ryze_async.testing._redis_server import free_port

from .pg_cluster import PostgresUnavailableError, _as_user

__all__ = ["PGBOUNCER", "pgbouncer"]

PGBOUNCER = "/usr/sbin/pgbouncer"
_START_TIMEOUT = 20.0


def _config(server_dsn: str, database: str, port: int, pool_size: int, root: Path) -> str:
    server = urlsplit(server_dsn)
    return f"""\
[databases]
{database} = host={server.hostname} port={server.port} dbname={database} user={server.username}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = md5
auth_file = {root / "userlist.txt"}
logfile = {root / "pgbouncer.log"}
pool_mode = transaction
default_pool_size = {pool_size}
"""


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start(prefix: list[str], root: Path, server_dsn: str, database: str,
           pool_size: int) -> tuple[subprocess.Popen[bytes], int]:
    """Start on a free port (a few tries: another process may take the port meanwhile)."""
    for _ in range(5):
        port = free_port()
        config = root / "pgbouncer.ini"
        config.write_text(_config(server_dsn, database, port, pool_size, root))
        proc = subprocess.Popen([*prefix, PGBOUNCER, str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            if _accepts(port):
                return proc, port
            time.sleep(0.05)
        _stop(proc)
    log = (root / "pgbouncer.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"pgbouncer did not start: {log}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def pgbouncer(server_dsn: str, database: str, password: str,
              pool_size: int = 2) -> Iterator[str]:
    """PgBouncer in transaction mode in front of ``server_dsn``'s server, for ``database``."""
    if not Path(PGBOUNCER).exists():
        raise PostgresUnavailableError(f"{PGBOUNCER} not found (apt-get install pgbouncer)")
    prefix, uid, gid = _as_user()
    user = urlsplit(server_dsn).username or "postgres"
    tmp = "/tmp" if uid is not None else None  # noqa: S108 - mkdtemp makes a fresh 0700 dir
    root = Path(tempfile.mkdtemp(prefix="ryze-pgbouncer-", dir=tmp))
    try:
        (root / "userlist.txt").write_text(f'"{user}" "{password}"\n')
        if uid is not None and gid is not None:
            for path in (root, root / "userlist.txt"):
                os.chown(path, uid, gid)
        proc, port = _start(prefix, root, server_dsn, database, pool_size)
        try:
            yield f"postgresql://{user}:{password}@127.0.0.1:{port}/{database}"
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)
