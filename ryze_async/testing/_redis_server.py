"""Throw-away Redis servers for tests of the shared quota (``quota_url``): `RedisServer` (one),
`LocalCluster` (a Redis Cluster of three masters), `SentinelSet` (a master, a replica and three
sentinels). Each runs on free loopback ports and is killed on exit."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["REDIS_CLI", "REDIS_SERVER", "LocalCluster", "RedisServer", "SentinelSet", "free_port"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    """A free loopback port for a server a test starts, outside the range the OS hands to
    connections as their local end: a server killed and started again on its port finds it
    free, never taken meanwhile by some client's connection (redis-server cannot bind then)."""
    low, high = _ephemeral_ports()
    below, above = range(10_000, low), range(high + 1, 65_536)
    ports = below if len(below) >= len(above) else above
    for _ in range(200):
        port = random.choice(ports)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port outside the ephemeral range")


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return 49_152, 65_535  # IANA's dynamic range: macOS, the BSDs, Windows
    return int(low), int(high)


class _Started:
    """Started on entering a ``with`` block, stopped on leaving it (the set-ups below)."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class RedisServer(_Started):
    """A redis-server on a free loopback port, no persistence; killed on exit."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - a fixed binary, our own arguments
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()




REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def _wait(check: Callable[[], bool], what: str, *, timeout: float = 20.0) -> None:
    """Until `check()` (bounded: `timeout` seconds), else RuntimeError naming `what`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} (waited {timeout:g} s)")
        time.sleep(0.05)


class _Servers(_Started):
    """redis-server processes of one test set-up, each on its own free port, killed on stop.

    `server_args` go to every server (TLS, a password); `cli_args` and `cli_env` to every
    ``redis-cli`` run against them (``--tls --cacert``; ``REDISCLI_AUTH``)."""

    def __init__(self, folder: Path, *, server_args: Sequence[str] = (),
                 cli_args: Sequence[str] = (), cli_env: Mapping[str, str] | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.server_args, self.cli_args = list(server_args), list(cli_args)
        self.cli_env = {**os.environ, **(cli_env or {})}
        self.tls = "--tls-port" in " ".join(self.server_args) or "--tls" in self.cli_args
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, port: int, *args: str) -> None:
        listen = (["--port", "0", "--tls-port", str(port)] if self.tls else ["--port", str(port)])
        self.processes[port] = subprocess.Popen(  # noqa: S603 - a fixed binary, our arguments
            [REDIS_SERVER, *args, *listen, "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.folder),
             "--logfile", str(self.folder / f"redis-{port}.log"),
             *self.server_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cli(self, port: int, *args: str, check: bool = True) -> str:
        """One redis-cli command against the server on `port` (bounded: 30 s)."""
        done = subprocess.run(  # noqa: S603 - a fixed binary, our arguments
            [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *self.cli_args, *args],
            capture_output=True, text=True, timeout=30, env=self.cli_env, check=False)
        if check and (done.returncode != 0 or done.stdout.startswith(("ERR", "(error)"))):
            raise RuntimeError(f"redis-cli {' '.join(args[:3])}: {done.stdout}{done.stderr}")
        return done.stdout

    def answers(self, port: int) -> bool:
        """Whether the server on `port` answers PING; RuntimeError at once if it exited."""
        if self.processes[port].poll() is not None:
            raise RuntimeError(f"redis-server on port {port} exited: see its log in {self.folder}")
        return self.cli(port, "PING", check=False).strip() == "PONG"

    def kill(self, port: int) -> None:
        process = self.processes[port]
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def stop(self) -> None:
        for port in self.processes:
            self.kill(port)


class LocalCluster(_Servers):
    """A Redis Cluster of `masters` redis-servers (no replicas) on free loopback ports, slots
    split by ``redis-cli --cluster create``; ready once every node says ``cluster_state:ok``.
    ``stop`` kills them all."""

    def __init__(self, folder: Path, masters: int = 3, **options: Any) -> None:
        super().__init__(folder, **options)
        self.ports = [free_port() for _ in range(masters)]

    def url(self, *, scheme: str = "redis+cluster", auth: str = "", host: str = "127.0.0.1",
            query: str = "") -> str:
        hosts = ",".join(f"{host}:{port}" for port in self.ports)
        return f"{scheme}://{auth}{hosts}/0{'?' + query if query else ''}"

    def start(self) -> None:
        try:
            for port in self.ports:
                self.spawn(port, "--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                           "--cluster-config-file", f"nodes-{port}.conf",
                           "--cluster-node-timeout", "5000")
            for port in self.ports:
                _wait(partial(self.answers, port), f"cluster node {port} did not start")
            self.cli(self.ports[0], "--cluster", "create",
                     *(f"127.0.0.1:{p}" for p in self.ports),
                     "--cluster-replicas", "0", "--cluster-yes")
            for port in self.ports:
                _wait(partial(self._ok, port), f"cluster node {port} never said cluster_state:ok")
        except BaseException:
            self.stop()
            raise

    def _ok(self, port: int) -> bool:
        return "cluster_state:ok" in self.cli(port, "CLUSTER", "INFO")

    def owner(self, slot: int) -> int:
        """The port of the master that serves `slot` now."""
        for line in self.cli(self.ports[0], "CLUSTER", "NODES").splitlines():
            fields = line.split()
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if not part.startswith("[") and int(low) <= slot <= int(high or low):
                    return int(fields[1].split(":")[1].split("@")[0])  # ip:port@bus
        raise RuntimeError(f"no node serves slot {slot}")

    def node_id(self, port: int) -> str:
        return self.cli(port, "CLUSTER", "MYID").strip()

    def move_slot(self, slot: int, target: int, *, hold: float = 0.0) -> None:
        """Move `slot` to the master on port `target` as ``redis-cli --cluster reshard`` does
        (IMPORTING, MIGRATING, MIGRATE of its keys, NODE everywhere), staying `hold` seconds in
        the migrating state after the keys moved: clients meet ASK then, MOVED after."""
        source = self.owner(slot)
        source_id, target_id = self.node_id(source), self.node_id(target)
        self.cli(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        self.cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        keys = self.cli(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "1000").split()
        if keys:
            self.cli(source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys)
        time.sleep(hold)
        for port in (target, source, *(p for p in self.ports if p not in (source, target))):
            self.cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)


class SentinelSet(_Servers):
    """A master, one replica and three sentinels (``redis-server --sentinel``) watching it as
    `name`, on free loopback ports; ready once every sentinel knows the replica and the
    other sentinels. ``stop`` kills them all.

    `guarded`: the data nodes refuse writes without a replica in sync
    (``min-replicas-to-write 1``, ``min-replicas-max-lag 10``), the setting
    ``docs/scaling-out.md`` asks of a Sentinel set: an old master stops admitting once its
    replica is promoted (issue 19).

    `tls`: the TLS settings of every server of the set, the sentinels' included
    (``--tls-cert-file``, ``--tls-key-file``, ``--tls-ca-cert-file``, ``--tls-auth-clients``):
    each then listens on TLS only, and the replica, the sentinels' watch and the sentinels'
    talk among themselves go over TLS; pass redis-cli's flags (``--tls --cacert CA``) as
    `cli_args`. `sentinel_password`: the sentinels' own password (``requirepass``; ``sentinel
    sentinel-pass`` for their talk among themselves)."""

    def __init__(self, folder: Path, name: str = "mymaster", *, password: str = "",
                 guarded: bool = False, tls: Sequence[str] = (), sentinel_password: str = "",
                 **options: Any) -> None:
        if password:  # the data nodes' default user: the sentinels and the replica know it
            options["server_args"] = [*options.get("server_args", ()), "--requirepass",
                                      password, "--masterauth", password]
            options["cli_env"] = {**options.get("cli_env", {}), "REDISCLI_AUTH": password}
        if guarded:
            options["server_args"] = [*options.get("server_args", ()),
                                      "--min-replicas-to-write", "1",
                                      "--min-replicas-max-lag", "10"]
        if tls:
            options["server_args"] = [*options.get("server_args", ()), *tls,
                                      "--tls-replication", "yes"]
        # A replica (re)syncs at once: the default waits 5 s for more replicas to share it.
        options["server_args"] = [*options.get("server_args", ()),
                                  "--repl-diskless-sync-delay", "0"]
        super().__init__(folder, **options)
        self.name, self.requirepass, self.guarded = name, password, guarded
        self.sentinel_tls, self.sentinel_password = list(tls), sentinel_password
        self.tls = self.tls or bool(tls)
        ports: list[int] = []
        while len(ports) < 5:  # free_port holds none: two draws may pick one port
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.master, self.replica, *self.sentinels = ports
        # Each sentinel is told the others (ids of our own) and the replica, instead of
        # finding them by their hello messages, every 2 s.
        self.ids = {port: f"{random.getrandbits(160):040x}" for port in self.sentinels}

    def url(self, *, auth: str = "", db: int = 0, host: str = "127.0.0.1",
            query: str = "") -> str:
        """The quota URL of the set (``rediss+sentinel://`` when it has `tls`)."""
        scheme = "rediss+sentinel" if self.sentinel_tls else "redis+sentinel"
        hosts = ",".join(f"{host}:{port}" for port in self.sentinels)
        return f"{scheme}://{auth}{hosts}/{self.name}/{db}{'?' + query if query else ''}"

    def start(self) -> None:
        try:
            self.spawn(self.master)
            self.spawn(self.replica, "--replicaof", "127.0.0.1", str(self.master))
            for port in self.sentinels:
                conf = self.folder / f"sentinel-{port}.conf"
                conf.write_text(self._sentinel_conf(port), encoding="ascii")
                self.processes[port] = subprocess.Popen(  # noqa: S603 - our arguments
                    [REDIS_SERVER, str(conf), "--sentinel", "--logfile",
                     str(self.folder / f"sentinel-{port}.log"), *self.sentinel_tls],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait(partial(self._synced, self.replica), "the replica never synced with its master")
            if self.guarded:  # the master counts the replica as good at its first ACK (1 s)
                _wait(partial(self._takes_writes, self.master),
                      "the master never counted its replica as in sync")
            for port in self.sentinels:
                _wait(partial(self._sees_all, port),
                      f"sentinel {port} never saw the replica and the other sentinels", timeout=30)
        except BaseException:
            self.stop()
            raise

    def _sentinel_conf(self, port: int) -> str:
        others = "".join(f"sentinel known-sentinel {self.name} 127.0.0.1 {other} {sid}\n"
                         for other, sid in self.ids.items() if other != port)
        listen = (f"port 0\ntls-port {port}\ntls-replication yes\n" if self.sentinel_tls
                  else f"port {port}\n")
        own = (f"requirepass {self.sentinel_password}\n"
               f"sentinel sentinel-pass {self.sentinel_password}\n"
               if self.sentinel_password else "")
        return (f"{listen}{own}bind 127.0.0.1\ndir {self.folder}\n"
                f"sentinel myid {self.ids[port]}\n"
                f"sentinel monitor {self.name} 127.0.0.1 {self.master} 2\n"
                f"sentinel down-after-milliseconds {self.name} 2000\n"
                f"sentinel failover-timeout {self.name} 10000\n"
                f"sentinel known-replica {self.name} 127.0.0.1 {self.replica}\n" + others
                + (f"sentinel auth-pass {self.name} {self.requirepass}\n"
                   if self.requirepass else ""))

    def _synced(self, port: int) -> bool:
        return "master_link_status:up" in self.cli(port, "INFO", "replication", check=False)

    def _takes_writes(self, port: int) -> bool:
        """A guarded master has a replica in sync (``min-replicas-to-write`` is met)."""
        return "min_slaves_good_slaves:1" in self.cli(port, "INFO", "replication", check=False)

    def _sees_all(self, port: int) -> bool:
        if self.processes[port].poll() is not None:
            return False
        master = self.sentinel_cli("SENTINEL", "MASTER", self.name, port=port).split()
        fields = dict(zip(master[::2], master[1::2], strict=False))
        return fields.get("num-slaves") == "1" and fields.get("num-other-sentinels") == "2"

    def master_port(self) -> int:
        """The port the sentinels name as the master now."""
        answer = self.sentinel_cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return int(answer.split()[1])

    def sentinel_cli(self, *args: str, port: int | None = None) -> str:
        """One command to a sentinel (the first by default; with the set's TLS flags and the
        sentinels' own password, if any; bounded: 30 s); its output, empty when it cannot be
        reached."""
        flags = self.cli_args if self.sentinel_tls else []
        env = {**os.environ, "REDISCLI_AUTH": self.sentinel_password} \
            if self.sentinel_password else None
        done = subprocess.run(  # noqa: S603 - a fixed binary, our arguments
            [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port or self.sentinels[0]), *flags, *args],
            capture_output=True, text=True, timeout=30, env=env, check=False)
        return done.stdout

    def failover(self) -> int:
        """``SENTINEL FAILOVER``, then wait (bounded: 30 s) until the sentinels name the
        replica, it says it is the master and the old master says it is a replica; returns the
        new master's port."""
        old = self.master_port()
        new = self.promote()
        self.await_demotion(old)
        return new

    def promote(self) -> int:
        """``SENTINEL FAILOVER``, then wait (bounded: 30 s) until the sentinels name the
        replica and it says it is the master; returns its port. The old master is not demoted
        yet: the sentinels turn it into a replica some 8 to 10 s after the switch, and until
        then it takes the writes of connections still open to it (the split brain of an
        unplanned failover, issue 19)."""
        old = self.master_port()
        _wait(self._failover_started, "the sentinels never took the failover", timeout=30)
        _wait(partial(self._promoted, old), "the failover never promoted the replica",
              timeout=30)
        return self.master_port()

    def _failover_started(self) -> bool:
        # NOGOODSLAVE until the sentinel has its first INFO of the replica (a new set: about
        # half the starts, when asked at once).
        answer = self.sentinel_cli("SENTINEL", "FAILOVER", self.name).strip()
        return answer == "OK" or "INPROGRESS" in answer

    def _promoted(self, old: int) -> bool:
        # Not checked: a sentinel that reconfigures a node ends with CLIENT KILL TYPE normal,
        # which may close redis-cli's own connection ("Server closed the connection"): not yet.
        new = self.master_port()
        return new != old and "role:master" in self.cli(new, "INFO", "replication",
                                                        check=False)

    def await_demotion(self, old: int) -> None:
        """Wait (bounded: 30 s) until the old master on port `old` is the new master's replica,
        in sync, and the new master counts it as a good replica (it takes writes again, when
        `guarded`)."""
        _wait(partial(self._demoted, old), "the sentinels never demoted the old master",
              timeout=30)

    def _demoted(self, old: int) -> bool:
        # Not checked, as in `_promoted`: an answer cut by the sentinels' CLIENT KILL is "not
        # yet" (so the master's answer must say it is one).
        replica = self.cli(old, "INFO", "replication", check=False)
        master = self.cli(self.master_port(), "INFO", "replication", check=False)
        return "role:slave" in replica and "master_link_status:up" in replica \
            and "role:master" in master and "min_slaves_good_slaves:0" not in master

