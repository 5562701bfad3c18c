"""One quota for every process and host on a token: a sliding log in Redis (extra ``redis``).

`RedisQuota` is a `QuotaBackend` (public as ``ryze_async.RedisQuota``; ``RyzeClient(quota_url=)``
builds one per event loop through `choose`). Every process that uses the same token on the same
server with the same Redis shares one log, so never more than ``limit`` requests reach the
server in any window of ``period`` seconds, fixed or sliding, at any phase. ``try_acquire``
never admits without asking Redis: each admission is one round trip. The design, and where it
differs from the libraries studied, is in `lua`'s docstring.

The client calls ``observe``/``hold_until``/``settle`` synchronously; here they start a write to
Redis in the background, and the next ``acquire`` (or ``aclose``) waits for those writes first,
so feedback is in Redis before this process's next admission and a failed write fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import re
import time
import uuid
from collections.abc import Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from redis import asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import MaxConnectionsError

from ..._cancels import pending_cancels, resurface_cancel
from ..._exceptions import InvalidRequestError, QuotaBackendError, QuotaTimeoutError
from ..._public import public
from ..._urls import scrub, shown_url
from ..local import (
    Lane,
    check_reserve,
    default_margin,
    late_allowance,
    probe_wait,
    stamp_allowance,
)
from .lua import ADMIT, ANNOUNCE, FEEDBACK, RECHECK, STAMP
from .reserve import RESERVE_TTL_MS, ReserveKeeper
from .topology import (
    CLUSTER_SCHEMES,
    FAILURES,
    SENTINEL_SCHEMES,
    Link,
    failure_text,
    open_link,
    topology_fault,
)

if TYPE_CHECKING:
    from redis.asyncio.cluster import RedisCluster

    from .. import QuotaBackend

__all__ = ["Admission", "QuotaBackendError", "QuotaTimeoutError", "RedisQuota", "check_url"]

_US = 1_000_000
_PROBE_NAP = 0.02  # seconds between asks while a fresh quota's probe is out
_SOCKET_TIMEOUT = 2.0  # a Redis that does not answer within it fails the admission
_POOL_SIZE = 32  # connections per quota: an admission holds one for one round trip
_RESERVED, _PROBING = 0, 1
_DATABASE = re.compile(r"/?[0-9]*")
_IDLE_TTL_MS = 60_000  # idle keys outlive their last relevant entry by this much
_log = logging.getLogger("ryze_async.quota")


class _Epochs:
    """What this process last saw of each quota's epoch (issue 19): token digest -> (gen, seq,
    when, on the monotonic clock). Per process, not per client, so a client built later (a
    new URL after a failover, a client per loop) still knows when the state went back. A
    memory older than the keys' idle TTL is forgotten: the keys may have expired meanwhile."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int, float]] = {}
        # The process's own latest admission: (gen, seq, member), the ring's key (lua.ADMIT).
        self._own: dict[str, tuple[int, int, str]] = {}

    def known(self, digest: str) -> tuple[int, int, int, str]:
        """(gen, seq) last seen, and this process's latest admission in that generation
        (seq, member; 0, "-": none)."""
        gen, seq, when = self._seen.get(digest, (0, 0, 0.0))
        if time.monotonic() - when > _IDLE_TTL_MS / 1000:
            return 0, 0, 0, "-"
        own_gen, own_seq, member = self._own.get(digest, (0, 0, "-"))
        if own_gen != gen:
            return gen, seq, 0, "-"
        return gen, seq, own_seq, member

    def admitted(self, digest: str, gen: int, seq: int, member: str) -> None:
        """This process's admission `member` took `seq` of generation `gen`."""
        if (gen, seq) > self._own.get(digest, (0, 0, "-"))[:2]:
            self._own[digest] = (gen, seq, member)

    def saw(self, digest: str, gen: int, seq: int) -> None:
        old = self._seen.get(digest)
        if old is None or (gen, seq) > old[:2]:
            self._seen[digest] = (gen, seq, time.monotonic())
        else:
            self._seen[digest] = (*old[:2], time.monotonic())


_EPOCHS = _Epochs()


def _url_fault(url: str) -> str | None:
    """What makes `url` unusable as a Redis URL (None: nothing); never quotes its password."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "its host or port cannot be read (a port is a number from 1 to 65535)"
    if port == 0:
        return "its port must be a number from 1 to 65535"
    if parts.scheme.lower() in ("redis", "rediss"):
        if not parts.hostname:
            return "it names no host"
        if not _DATABASE.fullmatch(parts.path):
            return "its database must be a number: redis://HOST:PORT/DB"
    try:
        parse_url(url)
    except ValueError as exc:
        return scrub(str(exc), url)
    return None


def check_url(url: str, *, name: str = "quota_url") -> None:
    """Refuse a Redis URL redis-py could not use (InvalidRequestError), before any connection:
    a bad port or database is the caller's setting, never an error at the first call."""
    several = url.partition("://")[0].lower() in CLUSTER_SCHEMES + SENTINEL_SCHEMES
    fault = topology_fault(url) if several else _url_fault(url)
    if fault is not None:
        raise InvalidRequestError(f"{name} {shown_url(url)} is not a usable Redis URL: {fault}",
                                  field="quota_url")


class Reservation:
    """A reservation in the shared log, held by one waiting call: its id, its slot (Redis
    microseconds) and when that slot comes on this loop's clock."""

    __slots__ = ("due", "member", "slot_us")

    def __init__(self, member: str) -> None:
        self.member = member
        self.slot_us = 0
        self.due = 0.0

    def hold(self, slot_us: int, wait_us: int) -> None:
        self.slot_us = slot_us
        self.due = asyncio.get_running_loop().time() + wait_us / _US


class Admission(float):
    """An admission's slot (Redis time, Unix seconds) that also knows its reservation's id and
    when the slot came on this loop's clock (at the earliest: the loop time its last round trip
    was asked, so a loop that stalled over the answer counts as late)."""

    __slots__ = ("due", "member")
    member: str
    due: float


@public
class RedisQuota:
    """At most `limit` admissions in any window of `period` seconds for every user of the keys.

    ``RyzeClient(quota_url=...)`` makes and closes its own; build one with `from_url` to admit
    other work through the same shared quota (``acquire``, then ``settle``; ``release`` a slot
    never used; ``aclose`` at the end).
    """

    def __init__(
        self,
        redis: aioredis.Redis | RedisCluster,
        *,
        token_digest: str,
        limit: int,
        period: float,
        margin: float | None = None,
        learn_first: bool = True,
        where: str = "Redis",
        reserve: int = 0,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an integer >= 1, not {limit!r}")
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"period must be a finite number of seconds > 0, not {period!r}")
        margin = default_margin(period) if margin is None else margin
        if not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"margin must be a finite number of seconds >= 0, not {margin!r}")
        check_reserve(reserve)
        if reserve >= limit:
            raise ValueError(f"reserve must leave bulk traffic a slot: below limit={limit}")
        self._redis = redis
        self._link = Link(redis)  # from_url's may close more (a Sentinel set's connections)
        self._limit, self._period, self._margin = limit, float(period), float(margin)
        self._window_us = round((self._period + self._margin) * _US)
        # A waiter or a request about to leave later than this on its slot is placed again.
        self._late_us = round(late_allowance(self._margin) * _US)
        # Bulk takes the reserve's unused slots in a window's oldest margin (lua: bulk_slot).
        self._slack_us = round(self._margin * _US)
        self._probe_ms = round(probe_wait(self._period) * 1000) if learn_first else 0
        self._where = where  # shown_url's: a URL's password never gets here
        prefix = f"ryze:{{{token_digest}}}:"
        self._keys = [
            prefix + k for k in ("log", "blocked", "budget", "conf", "probe", "reserves", "epoch")
        ]
        self._digest = token_digest
        self._reserve, self._id = reserve, uuid.uuid4().hex  # the id names our announcement
        # A reservation's id: this quota's and a serial (no uuid4, a system call, per admission).
        self._serial = itertools.count()
        self._keeper = ReserveKeeper(reserve, self._announce)
        self._admit = redis.register_script(ADMIT)
        # ADMIT's fields after max_wait up to the epoch, the same on every admission of a lane.
        self._admit_bulk, self._admit_interactive = (
            f"{_IDLE_TTL_MS} {self._probe_ms} {lane} {self._id} {RESERVE_TTL_MS} {self._slack_us}"
            for lane in ("bulk", "interactive"))
        self._announce_script = redis.register_script(ANNOUNCE)
        self._feedback = redis.register_script(FEEDBACK)
        self._recheck = redis.register_script(RECHECK)
        self._stamp = redis.register_script(STAMP)
        self._pending: set[asyncio.Task[Any]] = set()
        # Closing, then closed: redis-py reconnects a closed client on its next command, so a
        # write after `aclose` (a call in flight giving its slot back) would open a connection
        # that nobody closes. Writes asked for while closing are dropped (a slot not given back
        # ages out of the log: later, never over); commands after it fail closed.
        self._closing = self._closed = False
        self._probe_member: str | None = None
        self._guard_checked = False

    @classmethod
    def from_url(
        cls, url: str, *, token_digest: str, limit: int, period: float,
        margin: float | None = None, reserve: int = 0,
    ) -> RedisQuota:
        """A quota on the Redis at `url`: ``redis://``, ``rediss://`` or ``unix://`` (one
        server), ``redis+cluster://`` (a Redis Cluster) or ``redis+sentinel://`` (the master a
        Sentinel set names), each of the two with a ``rediss+`` form (TLS).

        `token_digest` names the quota's keys: a hash (``RyzeClient`` uses the sha256 of server
        origin and token), never the token. Socket timeouts are bounded and a failed command is
        retried once at most, so a dead Redis fails the admission within seconds instead of
        stalling it. Close it with ``aclose()``. A URL redis-py cannot use is refused at once
        (``InvalidRequestError``, its password never shown).
        """
        check_url(url)
        common = {"socket_timeout": _SOCKET_TIMEOUT, "socket_connect_timeout": _SOCKET_TIMEOUT,
                  "retry": Retry(NoBackoff(), 1), "decode_responses": False}
        link = open_link(url, common, lambda: Link(_one_server(url, common)))
        quota = cls(link.client, token_digest=token_digest, limit=limit, period=period,
                    margin=margin, where=_where(url), reserve=reserve)
        quota._link = link
        return quota

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def period(self) -> float:
        return self._period

    @property
    def margin(self) -> float:
        return self._margin

    @property
    def reserve(self) -> int:
        """Slots of every window this quota's client keeps free of bulk traffic (its own
        setting; the largest that a live client of the token announced is in force)."""
        return self._reserve

    def __repr__(self) -> str:
        return (
            f"RedisQuota(limit={self._limit}, period={self._period}, margin={self._margin}, "
            f"reserve={self._reserve}, backend={self._where!r})"
        )

    async def connect(self) -> None:
        """Open one connection now (TCP, TLS handshake, AUTH, SELECT) and keep it in the pool:
        a refused certificate or password shows before the first admission. Raises what
        redis-py raised (``choose.connect_shared_quota`` tells a setting from a Redis down).
        Through Sentinel, says once when the master lacks ``min-replicas-to-write``."""
        await self._link.connect()
        await self._check_guard()

    async def _check_guard(self) -> None:
        """Once per quota, through Sentinel only (one round trip): say when the master takes
        writes with no replica in sync, the split brain no epoch sees (`Link.unguarded`)."""
        if not self._guard_checked:
            self._guard_checked = True
            if await self._link.unguarded():
                _say_unguarded(self._where)

    async def announce(self) -> None:
        """Put this quota's reserve in force for every process on the token, from now until
        ``aclose`` (renewed in the background; it lapses after 30 s if this process dies).
        ``RyzeClient`` starts it when built in a running loop (`announce_soon`) and awaits it
        on ``async with`` and before its first admission."""
        await self._keeper.start()

    def announce_soon(self) -> None:
        """Start announcing the reserve now, without waiting; the next `announce` or
        ``acquire`` awaits it (and raises its failure: the admission fails closed)."""
        self._keeper.start_soon()

    async def _announce(self, reserve: int) -> Any:
        return await self._run(self._announce_script, [reserve, self._id, RESERVE_TTL_MS])

    def _failed(self, exc: BaseException) -> QuotaBackendError:
        return QuotaBackendError(
            f"quota backend {self._where} failed ({failure_text(exc)}); nothing was sent"
        )

    async def _run(self, script: Any, args: list[int | str]) -> Any:
        if self._closed:
            raise QuotaBackendError(f"quota backend {self._where} is closed; nothing was sent")
        cancels = pending_cancels()
        try:
            result = await self._link.run(partial(script, keys=self._keys, args=args))
        except FAILURES as exc:
            resurface_cancel(cancels)  # a cancel, not a failed backend: the caller stops
            raise self._failed(exc) from exc
        # redis-py may swallow a cancel (see _cancels); acquire then gives the slot back.
        resurface_cancel(cancels)
        return result

    def try_acquire(self, *, lane: Lane = "interactive") -> float | None:
        """Never a slot without asking Redis (a round trip): callers go on to ``acquire``."""
        return None

    async def acquire(
        self, *, lane: Lane = "interactive", deadline: float | None = None,
        max_wait: float | None = None,
    ) -> Admission:
        """Reserve a slot in the shared log, sleep until it, and return it.

        ``"bulk"``: the first-come-first-served slot after every reservation, leaving the
        reserve of every window free. ``"interactive"``: the earliest slot where every window
        around it has room, ahead of queued reservations when one is free (the reserve keeps
        one free). `max_wait` (seconds) or `deadline` (a loop time, the `QuotaBackend` form):
        when the slot is further away, raise `QuotaTimeoutError` at once with nothing reserved.
        Cancelling a waiter gives its reservation back.
        """
        # Each awaited only while it has something to do: no coroutine per admission otherwise.
        if self._pending:
            await self.flush()
        if not self._keeper.started:
            await self._keeper.start()
        if not self._guard_checked:
            await self._check_guard()
        # The lane's initial leads the id: the log tells who reserved each slot.
        loop = asyncio.get_running_loop()
        if max_wait is not None:
            deadline = loop.time() + max(0.0, max_wait)
        held = Reservation(f"{'b' if lane == 'bulk' else 'i'}{self._id}{next(self._serial):x}")
        try:
            while True:
                asked = loop.time()
                left = None if deadline is None else max(0.0, deadline - asked)
                wait_us, slot_us = await self._reserve_slot(held.member, left, lane)
                held.hold(slot_us, wait_us)
                if wait_us <= 0:
                    held.due = asked  # Redis placed it at its now, after this
                    break
                if await self._sleep_to_slot(held, deadline):
                    break
        except asyncio.CancelledError:
            # Nothing was sent: give the slot back, even if the reply never reached us.
            self._background(self._remove(held.member))
            raise
        return _admission(held.member, held.slot_us, held.due)

    async def _sleep_to_slot(self, held: Reservation, deadline: float | None) -> bool:
        """Sleep until ``held``'s slot, again while it moved later (another process's 429, or
        an interactive call that went ahead of a bulk one); True when it has come, False when
        it must be reserved again."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, held.due - loop.time()))
            asked = loop.time()
            wait_us, slot_us, now_us = await self._recheck_slot(held.member)
            if wait_us < 0:
                return False
            held.hold(slot_us, wait_us)  # a late waiter may go now, at a slot of now
            if wait_us == 0:
                held.due = asked + (slot_us - now_us) / _US
                return True
            if deadline is not None and held.due > deadline:
                self._background(self._remove(held.member))
                raise QuotaTimeoutError(
                    f"the quota slot moved {wait_us / _US:.3f} s away (a hold, or an"
                    " interactive call went ahead), past max_wait; nothing was sent",
                    available_in=wait_us / _US)

    async def _recheck_slot(self, member: str) -> tuple[int, int, int]:
        """RECHECK: (wait, slot, Redis now) in microseconds; wait -1: reserve again."""
        wait_us, slot_us, now_us, *epoch = await self._run(self._recheck, [
            member, self._limit, self._window_us, _IDLE_TTL_MS, self._late_us, self._slack_us,
            *_EPOCHS.known(self._digest)])
        self._saw(*epoch)
        return wait_us, slot_us, now_us

    def _saw(self, gen: int, seq: int, lost: int) -> None:
        """Remember the epoch a script answered with; say once that this call found a loss."""
        _EPOCHS.saw(self._digest, gen, seq)
        if lost:
            _log.warning(
                "the shared quota's state in %s was lost (a flush, an eviction, a restart or a"
                " failover): nobody on this token is admitted for %.3f s, one window, so that no"
                " window goes over the limit", self._where, self._window_us / _US)

    async def _reserve_slot(
        self, member: str, max_wait: float | None, lane: Lane
    ) -> tuple[int, int]:
        """One reservation: (wait, slot) in microseconds, asking again while a probe is out."""
        head = f"{self._limit} {self._window_us} {self._reserve} {member}"
        lane_fields = self._admit_bulk if lane == "bulk" else self._admit_interactive
        wait = -1 if max_wait is None else round(max_wait * _US)
        while True:
            gen, seq, own_seq, own = _EPOCHS.known(self._digest)
            # One argument and one reply, each of space-separated fields (lua.ADMIT).
            answer = await self._run(
                self._admit, [f"{head} {wait} {lane_fields} {gen} {seq} {own_seq} {own}"])
            kind, wait_us, slot_us, probed, *epoch = map(int, answer.split())
            self._saw(*epoch)
            if kind == _RESERVED:
                _EPOCHS.admitted(self._digest, epoch[0], epoch[1], member)
            if kind != _PROBING:
                break
            await asyncio.sleep(min(wait_us / _US, _PROBE_NAP))
        if kind != _RESERVED:
            raise QuotaTimeoutError(
                f"no quota slot within {max_wait} s (the next is in {wait_us / _US:.3f} s);"
                " nothing was sent", available_in=wait_us / _US,
            )
        if probed:
            self._probe_member = member
        return wait_us, slot_us

    async def _remove(self, member: str) -> None:
        try:
            await self._redis.zrem(self._keys[0], member)
        except FAILURES as exc:
            raise self._failed(exc) from exc

    def release(self, slot: float) -> None:
        """Give back a slot that was admitted but never used for a send (never after sending).

        Only an `Admission` this quota returned names a reservation; any other float is ignored.
        """
        member = getattr(slot, "member", None)
        if isinstance(member, str):
            self._background(self._remove(member))

    def late(self, slot: float) -> bool:
        """Whether a request leaving now is later than its slot by more than half the margin:
        read from this loop's clock, no round trip (an `Admission` of this quota only)."""
        due = getattr(slot, "due", None)
        return due is not None and (
            asyncio.get_running_loop().time() - due > late_allowance(self._margin))

    async def readmit(self, slot: float, *, lane: Lane = "interactive") -> float | None:
        """The slot a request leaving now goes with: ``slot`` when it is on time; for a late one
        (one round trip, the waiters' recheck) a slot of now in its place when one fits in
        every window, its lane's way (the reservation's id tells the lane); else None: the
        reservation is given back and the caller acquires again, having sent nothing."""
        member = getattr(slot, "member", None)
        if not isinstance(member, str) or not self.late(slot):
            return slot
        asked = asyncio.get_running_loop().time()
        wait_us, slot_us, now_us = await self._recheck_slot(member)
        if wait_us == 0:
            return _admission(member, slot_us, asked + (slot_us - now_us) / _US)
        if wait_us > 0:  # a hold moved it later: given back, the caller waits in its lane
            self._background(self._remove(member))
        return None

    def sent(self, slot: float) -> float:
        """The request of ``slot`` is leaving now: when that is more than `stamp_allowance`
        after its slot came, its entry in the log moves that much later (`lua.STAMP`; the
        reservations it then crowds move later), in the background: the send never waits for
        it, this process's next admission does (and fails closed if it failed). On time,
        nothing is asked. The slot is returned as it was (the log alone holds its new time)."""
        member = getattr(slot, "member", None)
        due = getattr(slot, "due", None)
        late = 0.0 if due is None else asyncio.get_running_loop().time() - due
        if isinstance(member, str) and late > stamp_allowance(self._margin):
            self._background(self._run(self._stamp, [
                member, self._limit, self._window_us, _IDLE_TTL_MS, self._slack_us,
                round(late * _US)]))
        return slot

    def _background(self, job: Coroutine[Any, Any, Any]) -> None:
        if self._closing:
            job.close()
            return
        task = asyncio.get_running_loop().create_task(job)
        # Read here too: a failure nobody flushes (the client closed) is not an unread error;
        # flush() still sees it and fails closed.
        task.add_done_callback(_read_outcome)
        self._pending.add(task)

    async def flush(self) -> None:
        """Wait until the feedback given so far is in Redis; a failed write fails closed."""
        while self._pending:
            tasks = set(self._pending)
            # asyncio.wait, not gather: a caller cancelled here leaves the writes running (a
            # cancelled waiter's give-back, a 429's hold), for the next flush to wait for.
            await asyncio.wait(tasks)
            self._pending -= tasks
            for task in tasks:
                failure = None if task.cancelled() else task.exception()
                if isinstance(failure, QuotaBackendError):
                    raise failure

    def hold_until(self, delay: float) -> None:
        """Admit nobody, in any process, for `delay` seconds from now (Redis time)."""
        if math.isnan(delay):
            raise ValueError("delay must be a number of seconds, not NaN")
        self._send_feedback(hold=delay)

    def observe(
        self,
        *,
        limit: int | None,
        remaining: int | None,
        reset_after: float | None,
        admitted_at: float | None = None,
    ) -> None:
        """Take in a response's X-RateLimit headers (None: absent); shared with every process."""
        usable = remaining is not None and reset_after is not None and not math.isnan(reset_after)
        if not usable and (limit is None or limit >= self._limit):
            return
        if limit is not None and 1 <= limit < self._limit:
            self._limit = limit
        self._send_feedback(
            server_limit=limit,
            remaining=remaining if usable else None,
            reset_after=reset_after if usable else None,
            admitted_at=admitted_at,
        )

    def _send_feedback(
        self,
        *,
        hold: float | None = None,
        server_limit: int | None = None,
        remaining: int | None = None,
        reset_after: float | None = None,
        admitted_at: float | None = None,
    ) -> None:
        def us(seconds: float | None) -> int:  # a duration of a day at most: no inf overflow
            return -1 if seconds is None else max(0, round(min(seconds, 86400.0) * _US))

        args: list[int | str] = [
            us(hold), -1 if remaining is None else max(remaining, 0), us(reset_after),
            -1 if admitted_at is None else round(admitted_at * _US),
            -1 if server_limit is None else server_limit,
            self._limit, self._window_us, _IDLE_TTL_MS, round((2 * self._period + 5) * _US),
            self._slack_us, getattr(admitted_at, "member", None) or "",
        ]
        self._background(self._run(self._feedback, args))

    def settle(self) -> None:
        """A fresh quota's first attempt is over: let the others in. Idempotent."""
        member, self._probe_member = self._probe_member, None
        if member is not None:
            self._background(self._end_probe(member))

    async def _end_probe(self, member: str) -> None:
        try:
            # Only our own probe: another process's may have replaced an expired one.
            if await self._redis.get(self._keys[4]) in (member, member.encode()):
                await self._redis.delete(self._keys[4])
        except FAILURES as exc:
            raise self._failed(exc) from exc

    async def aclose(self) -> None:
        """Finish pending writes and withdraw the reserve (best effort), close the pool; after
        it, nothing reaches Redis (writes asked for are dropped, admissions fail closed)."""
        self._closing = True
        while self._pending:  # every write, also past a failed one (flush stops at it)
            tasks = set(self._pending)
            await asyncio.wait(tasks)
            self._pending -= tasks
        await self._keeper.stop()
        self._closed = True
        await self._link.aclose()


_UNGUARDED_SAID: set[str] = set()  # the Redis named, once per process


def _say_unguarded(where: str) -> None:
    if where not in _UNGUARDED_SAID:
        _UNGUARDED_SAID.add(where)
        _log.warning(
            "the master of %s takes writes with no replica in sync (min-replicas-to-write is"
            " not set): in a failover, connections still open to the old master admit calls"
            " the new master never sees, and the quota can go over the limit; set"
            " min-replicas-to-write 1 and min-replicas-max-lag 10 on its data nodes", where)


class _Pool(aioredis.BlockingConnectionPool):
    """A blocking pool whose path while a connection is idle is the plain pool's: the
    `Condition` and a timeout per command (~30 us of an admission's ~400, issue 18) are paid
    only when every connection is in use, and a release wakes whoever waits then."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._waiting = 0  # callers in the blocking path: a release must wake one

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._available_connections and not self._waiting:
            # The idle one may be taken while this waits for the pool's lock: then block.
            with contextlib.suppress(MaxConnectionsError):
                return await aioredis.ConnectionPool.get_connection(self)  # type: ignore[no-untyped-call]
        self._waiting += 1
        try:
            return await super().get_connection()  # type: ignore[no-untyped-call]
        finally:
            self._waiting -= 1

    async def release(self, connection: Any) -> None:
        await aioredis.ConnectionPool.release(self, connection)
        # Counted before they look at the pool: one that looked before this release is woken
        # here, one that looks after it finds the connection.
        if self._waiting:
            async with self._condition:
                self._condition.notify()


def _one_server(url: str, common: dict[str, Any]) -> aioredis.Redis:
    # Blocking: a call beyond the pool's size waits (up to the socket timeout) for a free
    # connection. The default pool raises "Too many connections" instead, and a campaign
    # of more than 100 concurrent calls failed closed on its first burst.
    pool = _Pool.from_url(url, max_connections=_POOL_SIZE, timeout=_SOCKET_TIMEOUT, **common)
    return aioredis.Redis.from_pool(pool)  # closed with it


def _where(url: str) -> str:
    """How messages name the quota's Redis (`shown_url`'s: a password never gets here)."""
    scheme, _, rest = shown_url(url).partition("://")
    kind = {"cluster": "Redis Cluster", "sentinel": "Redis through Sentinel"}
    return f"{kind.get(scheme.partition('+')[2], 'Redis')} at {rest}"


def _admission(member: str, slot_us: int, due: float) -> Admission:
    admission = Admission(slot_us / _US)
    admission.member, admission.due = member, due
    return admission


def _read_outcome(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


if TYPE_CHECKING:  # mypy checks that RedisQuota is a QuotaBackend
    def _is_a_backend(quota: RedisQuota) -> QuotaBackend:
        return quota
