"""A throw-away PostgreSQL cluster on a free loopback port, for tests and benchmarks.

PostgreSQL refuses to run as root, so as root (CI, this machine) ``initdb`` and ``pg_ctl`` run
as the ``postgres`` system user (created by the Debian package) through ``runuser``; as any other
user they run as that user. The cluster lives in a fresh temporary directory, listens on
127.0.0.1 only (trust authentication for loopback, nothing else), keeps ``fsync=on`` (the
journal's durability is part of what the tests and the benchmark measure), and is stopped with
``pg_ctl stop -m immediate`` and removed at the end.

``RYZE_TEST_POSTGRES_DSN`` set in the environment skips all this and uses that server instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ryze_async.testing._redis_server import free_port

__all__ = ["PgServer", "PostgresUnavailableError", "find_bindir", "pg_cluster", "pg_server"]

DSN_ENV = "RYZE_TEST_POSTGRES_DSN"


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server binaries here (or no unprivileged user to run them as root)."""


def find_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres`` (newest version first)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(Path(p).parent.name), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for bindir in candidates:
        if all((Path(bindir) / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(bindir)
    raise PostgresUnavailableError(
        "PostgreSQL server binaries not found (apt-get install postgresql): "
        "set RYZE_TEST_POSTGRES_DSN to use a running server instead")


def _as_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix, uid and gid to run the server with (never root)."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailableError(
            "running as root and there is no 'postgres' user to run PostgreSQL as") from None
    runuser = shutil.which("runuser")  # util-linux: on every Debian and Ubuntu
    if runuser is None:
        raise PostgresUnavailableError("running as root and runuser is missing")
    return [runuser, "-u", "postgres", "--"], user.pw_uid, user.pw_gid


def _run(prefix: list[str], argv: list[str], timeout: float = 120) -> None:
    done = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed ({done.returncode}): "
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")


@dataclass
class PgServer:
    """A running throw-away cluster the test may stop and start again on the same port (the
    same data: a restart, as an operator's or a crash's)."""

    dsn: str
    prefix: list[str]
    bindir: Path
    root: Path
    data: Path
    options: str

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``: ``fast`` ends every session (rolled back), then stops."""
        _run(self.prefix, [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m",
                           mode, "-w", "-t", "60"], timeout=90)

    def start(self) -> None:
        """Start again on the same port; returns once it accepts connections."""
        _run(self.prefix, [str(self.bindir / "pg_ctl"), "start", "-D", str(self.data), "-w",
                           "-t", "60", "-l", str(self.root / "server.log"), "-o",
                           self.options], timeout=90)


@contextlib.contextmanager
def pg_server(database: str = "ryze", options: str = "") -> Iterator[PgServer]:
    """Start a cluster, create ``database``, yield it; stop and remove it afterwards.
    ``options`` are more ``-c name=value`` settings of the server (TLS, ``hba_file``)."""
    bindir = find_bindir()
    prefix, uid, gid = _as_user()
    # As root, under /tmp: the server's user must reach the directory, and $TMPDIR may sit
    # inside root's home.
    tmp = "/tmp" if uid is not None else None  # noqa: S108 - mkdtemp makes a fresh 0700 dir
    root = Path(tempfile.mkdtemp(prefix="ryze-pg-", dir=tmp))
    data = root / "data"
    try:
        if uid is not None and gid is not None:
            os.chown(root, uid, gid)
        root.chmod(0o700)
        _run(prefix, [str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                      "--auth=trust", "-E", "UTF8", "--no-instructions"])
        port, started = _start(prefix, bindir, root, data, options)
        try:
            _run(prefix, [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                          "-U", "postgres", database])
            yield PgServer(f"postgresql://postgres@127.0.0.1:{port}/{database}", prefix,
                           bindir, root, data, started)
        finally:
            with contextlib.suppress(Exception):
                _run(prefix, [str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m",
                              "immediate", "-w"], timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def pg_cluster(database: str = "ryze", options: str = "") -> Iterator[str]:
    """Start a cluster, create ``database``, yield its DSN; stop and remove it afterwards.
    ``options`` are more ``-c name=value`` settings of the server (TLS, ``hba_file``)."""
    external = os.environ.get(DSN_ENV)
    if external and not options:
        yield external
        return
    with pg_server(database, options) as server:
        yield server.dsn


def _start(prefix: list[str], bindir: Path, root: Path, data: Path, extra: str
           ) -> tuple[int, str]:
    """Start the server on a free port (a few tries: another process may take the port)."""
    last: Exception | None = None
    for _ in range(5):
        # Outside the ephemeral range: a cluster stopped and started again finds its port free.
        port = free_port()
        options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=on "
                   f"-c synchronous_commit=on -c max_connections=200 {extra}")
        try:
            # -w: pg_ctl returns once the server accepts connections (bounded by -t).
            _run(prefix, [str(bindir / "pg_ctl"), "start", "-D", str(data), "-w", "-t", "60",
                          "-l", str(root / "server.log"), "-o", options])
        except RuntimeError as exc:
            last = exc
            continue
        return port, options
    raise RuntimeError(f"PostgreSQL did not start: {last}")
