"""Which Redis a quota URL names, and the redis-py client that reaches it (issue 19).

- ``redis://``, ``rediss://``, ``unix://``: one server (a blocking pool of its own).
- ``redis+cluster://[user:pass@]host:port[,host:port...][/0]`` (``rediss+cluster://`` with
  TLS): a Redis Cluster, found through any of the nodes listed. Every key of one quota carries
  one hash tag, so each script runs on the one node that owns the token's slot; redis-py follows
  MOVED and ASK while a slot moves, and loads a script on every primary when a node answers
  NOSCRIPT.
- ``redis+sentinel://[user:pass@]host:port[,host:port...]/MASTER[/DB]`` (``rediss+sentinel://``:
  TLS to the sentinels and to the master): the master that the listed sentinels name, asked
  again after a failover. The URL's user and password are the master's; sentinels that want a
  password of their own get ``?sentinel_password=`` (and ``sentinel_username=``).

A URL's query (``ssl_ca_certs``, ``ssl_cert_reqs``...) applies to every node. Nothing here shows a
URL: callers name it through ``_urls.shown_url``.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from redis import asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    ClusterError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

__all__ = ["CLUSTER_SCHEMES", "FAILURES", "SENTINEL_SCHEMES", "Link", "UnknownMasterError",
           "failure_text", "open_link", "topology_fault"]

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
_SENTINEL_AUTH = ("sentinel_username", "sentinel_password")
_NETLOC = re.compile(r"(?:(?P<userinfo>.*)@)?(?P<hosts>[^@]*)", re.DOTALL)
_HOST = re.compile(r"(?P<host>\[[^\]]+\]|[^:\[\]]+):(?P<port>[0-9]{1,5})")
_SENTINEL_PATH = re.compile(r"/(?P<master>[^/]+)(?:/(?P<db>[0-9]+))?/?")
# How long a script is tried again while its slot moves. A node that is importing or migrating
# the slot answers TRYAGAIN to a script whose keys it holds only some of (a quota always has
# keys that do not exist: no hold, no probe), and redis-py gives up after 16 redirects
# (about 0.4 s). Moving a quota's few keys takes milliseconds; a reshard stalled longer fails
# the admission closed.
_MOVING_S = 2.0
#: What a failed Redis command raises, a cluster's included (redis-py's RedisClusterException,
#: e.g. no node reachable, is no RedisError).
FAILURES = (RedisError, RedisClusterException, OSError, TimeoutError)
_MOVING_NAP = 0.05
T = TypeVar("T")
# How redis-py's MasterNotFoundError names each sentinel's failure: "<its repr> - Error(..."
# (redis-py 6, 7), "<its repr> - network:Error: ..." (8).
_SENTINEL_FAILURE = re.compile(r" - (?:[a-z_]+:)?([A-Za-z]\w*)[(:]")
_UNREACHED = ("ConnectionError", "TimeoutError")


def failure_text(exc: BaseException) -> str:
    """How a failed Redis command reads in a message: its type and text. A master no sentinel
    named is cut to what each sentinel's failure was: redis-py quotes its repr of every
    sentinel's connection (about 1,600 characters each), which the exception's cause keeps."""
    if not isinstance(exc, MasterNotFoundError):
        return f"{type(exc).__name__}: {exc}"
    head, _, detail = str(exc).partition(" : ")
    kinds = _SENTINEL_FAILURE.findall(detail)
    unreached = sum(kind in _UNREACHED for kind in kinds)
    why = []
    if unreached:
        why.append(f"{unreached} sentinel{'s' if unreached > 1 else ''} could not be reached")
    others = sorted({kind for kind in kinds if kind not in _UNREACHED})
    if others:
        why.append(f"sentinels failed with {', '.join(others)}")
    if not kinds:
        why.append("the sentinels that answered name no master of that name that is up")
    return f"{type(exc).__name__}: {head} ({'; '.join(why)})"


class UnknownMasterError(MasterNotFoundError):
    """Every sentinel of the URL answered, and none knows the master its path names: a setting
    to fix, not a Redis down to wait out."""


@dataclass
class Link:
    """A quota's redis-py client, how its first connection is opened, and what else closes
    with it (a Sentinel set's own connections)."""

    client: aioredis.Redis | RedisCluster
    also_close: list[aioredis.Redis] = field(default_factory=list)
    master: str = ""  # the name of the master that sentinels name ("": no Sentinel)

    @property
    def sentinel(self) -> bool:
        """A master that sentinels name: it can be promoted around us."""
        return bool(self.master)

    async def connect(self) -> None:
        """Open a connection now (TLS handshake, AUTH, and for a cluster its slot map); raises
        what redis-py raised."""
        if isinstance(self.client, RedisCluster):
            await self.client.initialize()
            return
        pool = self.client.connection_pool
        try:
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        except BaseException as exc:
            failed = exc
        else:
            await pool.release(connection)
            return
        refusal = await self._sentinels_refusal() if isinstance(failed, MasterNotFoundError) \
            else None
        # A refused setting leaves the caller with no client to close: the sentinels'
        # connections made to find the master go now (they reopen when asked again).
        for other in self.also_close:
            await other.connection_pool.disconnect()
        # Raised here, not in the except block: a TLS failure's own cause stays its context.
        raise refusal or failed

    async def _sentinels_refusal(self) -> BaseException | None:
        """Why the sentinels refused us, when they did: their certificate or their own
        password. redis-py's MasterNotFoundError keeps only the text of each sentinel's error,
        and a refused setting must read as one (``InvalidRequestError``, not a Redis down)."""
        answers = await asyncio.gather(*(s.ping() for s in self.also_close),
                                       return_exceptions=True)
        for answer in answers:
            if isinstance(answer, AuthenticationError):
                return AuthenticationError(
                    f"a sentinel refused it: {answer} (sentinels with a password of their own"
                    " take it as sentinel_password= in the URL)")
            if isinstance(answer, FAILURES) and isinstance(answer.__context__, ssl.SSLError):
                return answer
        if any(isinstance(answer, BaseException) for answer in answers):
            return None  # a sentinel we did not reach may know the master: a Redis down
        return await self._unknown_master()

    async def _unknown_master(self) -> UnknownMasterError | None:
        """A refusal when every sentinel says it knows no master of our name (a typo in the
        URL's path); None when any knows it (it is down, or being failed over) or cannot say."""
        known = await asyncio.gather(*(s.sentinel_master(self.master) for s in self.also_close),
                                     return_exceptions=True)
        if all(isinstance(k, ResponseError) and "no such master" in str(k).lower()
               for k in known):
            return UnknownMasterError(
                f"no sentinel knows a master named {self.master!r} (the URL's path names it: "
                "redis+sentinel://HOST:PORT,HOST:PORT/MASTER/DB)")
        return None

    async def unguarded(self) -> bool:
        """Whether the master that sentinels name takes writes with no replica in sync (no
        ``min-replicas-to-write``: its ``INFO replication`` has no ``min_slaves_good_slaves``).
        Such an old master goes on admitting, after its replica's promotion, the calls of
        connections still open to it: a split brain no epoch sees (issue 19). False when it
        cannot tell: one server, a cluster, or INFO refused by the user's ACL rule."""
        if not self.sentinel:
            return False
        try:
            info = await self.client.info("replication")
        except FAILURES:
            return False
        return "min_slaves_good_slaves" not in info

    async def run(self, job: Callable[[], Awaitable[T]]) -> T:
        """`job()`; on a cluster, again while the slot is moving (none of the tries ran: each
        was redirected or told to try again), for `_MOVING_S` at most."""
        if not isinstance(self.client, RedisCluster):
            return await job()
        deadline = time.monotonic() + _MOVING_S
        while True:
            try:
                return await job()
            except ClusterError as exc:
                if "TTL exhausted" not in str(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(_MOVING_NAP)

    async def aclose(self) -> None:
        await self.client.aclose()
        for other in self.also_close:
            await other.aclose()


@dataclass(frozen=True)
class _Parts:
    """A multi-host URL taken apart: its plain form for one host (what redis-py's ``parse_url``
    reads: user, password, TLS, query), the hosts, and its path."""

    single: str
    hosts: list[tuple[str, int]]
    path: str
    extra: dict[str, str]


def _parts(url: str) -> _Parts:
    """Raises ValueError (never quoting the URL) when `url` cannot be read."""
    split = urlsplit(url)
    if "@" in split.path:
        raise ValueError("its host list cannot be read (a password's '/', '?' or '#' must be"
                         " percent-encoded)")
    netloc = _NETLOC.fullmatch(split.netloc)
    if netloc is None or not netloc["hosts"]:
        raise ValueError("it names no host")
    hosts = []
    for item in netloc["hosts"].split(","):
        where = _HOST.fullmatch(item)
        if where is None or not 1 <= int(where["port"]) <= 65_535:
            raise ValueError("each host is HOST:PORT, the port a number from 1 to 65535")
        hosts.append((where["host"].strip("[]"), int(where["port"])))
    query = parse_qsl(split.query, keep_blank_values=True)
    extra = {k: v for k, v in query if k in _SENTINEL_AUTH}
    kept = urlencode([(k, v) for k, v in query if k not in _SENTINEL_AUTH])
    userinfo = f"{netloc['userinfo']}@" if netloc["userinfo"] is not None else ""
    base = split.scheme.lower().partition("+")[0]
    single = urlunsplit((base, f"{userinfo}{netloc['hosts'].split(',')[0]}", "", kept, ""))
    return _Parts(single, hosts, split.path, extra)


def topology_fault(url: str) -> str | None:
    """What makes a cluster or sentinel `url` unusable (None: nothing, or another scheme)."""
    scheme = url.partition("://")[0].lower()
    if scheme not in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
        return None
    try:
        parts = _parts(url)
        parse_url(parts.single)
    except ValueError as exc:
        return str(exc) if "host" in str(exc) else "its query cannot be read"  # never the URL
    if scheme in CLUSTER_SCHEMES and parts.path not in ("", "/", "/0"):
        return "a Redis Cluster has database 0 only: redis+cluster://HOST:PORT,HOST:PORT/0"
    if scheme in SENTINEL_SCHEMES and _SENTINEL_PATH.fullmatch(parts.path) is None:
        return "it names no master: redis+sentinel://HOST:PORT,HOST:PORT/MASTER/DB"
    return None


def _connection_kwargs(single: str, common: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {**common, **parse_url(single)}
    if kwargs.pop("connection_class", None) is SSLConnection:
        kwargs["ssl"] = True
    kwargs.pop("host", None)
    kwargs.pop("port", None)
    return kwargs


def _cluster(parts: _Parts, common: dict[str, Any]) -> Link:
    kwargs = _connection_kwargs(parts.single, common)
    kwargs.pop("db", None)
    nodes = [ClusterNode(host, port) for host, port in parts.hosts]
    # A MOVED patches the one slot's owner, all a quota needs. redis-py before 8.2 also closed
    # every connection every 5th MOVED (reinitialize_steps), under the admissions in flight on
    # them ("Connection closed by server" while a slot moved): never.
    return Link(RedisCluster(startup_nodes=nodes, reinitialize_steps=0, **kwargs))


def _sentinel(parts: _Parts, common: dict[str, Any]) -> Link:
    where = _SENTINEL_PATH.fullmatch(parts.path)
    if where is None:  # topology_fault refused it before
        raise ValueError("it names no master")
    kwargs = _connection_kwargs(parts.single, common)
    kwargs["db"] = int(where["db"] or 0)
    own = {k: v for k, v in kwargs.items() if k.startswith(("socket_", "ssl"))}
    auth = {k.removeprefix("sentinel_"): unquote(v) for k, v in parts.extra.items()}
    # A failed sentinel is passed over for the next one: no retry of its own.
    sentinels = Sentinel(parts.hosts, sentinel_kwargs={**own, **auth,
                                                        "retry": Retry(NoBackoff(), 0)})
    name = unquote(where["master"])
    master = sentinels.master_for(name, **kwargs)
    return Link(master, also_close=list(sentinels.sentinels), master=name)


def open_link(url: str, common: dict[str, Any], single: Callable[[], Link]) -> Link:
    """The client for `url`: a cluster's, a sentinel-managed master's, or `single()` (one
    server). `common` holds the timeouts and retry every connection gets."""
    scheme = url.partition("://")[0].lower()
    if scheme in CLUSTER_SCHEMES:
        return _cluster(_parts(url), common)
    if scheme in SENTINEL_SCHEMES:
        return _sentinel(_parts(url), common)
    return single()
