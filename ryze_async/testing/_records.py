"""What the fake server saw: one `RecordedRequest` per request that reached a handler."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, TypeVar, overload

Route = Literal["audio", "fake", "health", "other"]
_T = TypeVar("_T")


class HeaderDict(dict[str, str]):
    """Received headers: names kept as they came over the wire, looked up ignoring case.

    ``headers["content-type"]``, ``headers.get("Content-Type")`` and ``"TOKEN" in headers``
    all find a ``Content-Type`` / ``token`` header, so a negative check such as
    ``"Authorization" not in headers`` cannot pass just because of casing. Read-only.
    """

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        merged: dict[str, str] = {}
        names: dict[str, str] = {}  # lower-cased -> first spelling received
        for name, value in items:
            key = names.setdefault(name.lower(), name)
            # A repeated header is one comma-separated list (RFC 9110, section 5.3).
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        super().__init__(merged)
        self._names = names

    def _key(self, name: str) -> str:
        return self._names.get(name.lower(), name)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(self._key(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(self._key(name))

    @overload
    def get(self, name: str, default: None = None, /) -> str | None: ...

    @overload
    def get(self, name: str, default: str, /) -> str: ...

    @overload
    def get(self, name: str, default: _T, /) -> str | _T: ...

    def get(self, name: str, default: object = None, /) -> object:
        """The value of header `name` (any case), or `default`."""
        return super().get(self._key(name), default)

    def __reduce__(self) -> tuple[type[HeaderDict], tuple[list[tuple[str, str]]]]:
        # copy/pickle would otherwise rebuild through the blocked __setitem__.
        return (HeaderDict, (list(self.items()),))

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("recorded headers are read-only")

    __setitem__ = __delitem__ = _read_only
    pop = popitem = clear = update = setdefault = _read_only


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One HTTP request as the fake server received it, and how it was answered.

    Attributes:
        method: HTTP method, e.g. ``"POST"``.
        path: the raw request path, percent-encoding intact and without the query string
            (``/api/call/audio/a%2Fb`` stays exactly that), so tests can prove the instance
            name travelled as one encoded segment.
        route: ``"audio"``, ``"fake"``, ``"health"`` or ``"other"``.
        instance: the decoded instance segment of a call route, else ``None``.
        headers: every received header, as a `HeaderDict` (names as received, case-insensitive
            lookups, repeated headers joined with ", "). Excluded from ``repr``: it holds
            the token.
        body: the raw request body.
        json: the body parsed as JSON, or ``None`` when it was empty or not JSON.
        received_at: arrival instant on the server's (injectable) clock, Unix seconds.
        status: the status the server answered, or ``None`` when it sent no complete
            response (``DROP_AFTER_READ``, ``HANG``, ``TRUNCATED``, or dropped at stop).
        connection_id: identifies the TCP connection the request came on; two requests with
            the same id shared a keep-alive connection.
        query: the raw query string (``""`` when absent), e.g. to prove no ``?token=``.
    """

    method: str
    path: str
    route: Route
    instance: str | None
    headers: HeaderDict = field(repr=False)
    body: bytes = field(repr=False)
    json: Any = field(repr=False)
    received_at: float
    status: int | None
    connection_id: int
    query: str = ""


class RequestLog:
    """Arrival-ordered records, answered in place, with waiters for a count; `on_answered`
    sees each record once its answer (or its lack of one) is known."""

    def __init__(self, on_answered: Callable[[RecordedRequest], None] | None = None) -> None:
        self._records: list[RecordedRequest] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._on_answered = on_answered

    @property
    def records(self) -> list[RecordedRequest]:
        """A snapshot copy, so callers cannot corrupt the log."""
        return list(self._records)

    def append(self, record: RecordedRequest) -> None:
        """Record a request at arrival (before it is answered) and wake matching waiters."""
        self._records.append(record)
        count = len(self._records)
        for wanted, waiter in self._waiters:
            if count >= wanted and not waiter.done():
                waiter.set_result(None)

    def answered(self, record: RecordedRequest, status: int | None) -> RecordedRequest:
        """Replace `record` by a copy carrying `status`; a record cleared by reset() stays gone."""
        updated = dataclasses.replace(record, status=status)
        # Search from the end: the record being answered is almost always among the newest.
        for index in range(len(self._records) - 1, -1, -1):
            if self._records[index] is record:
                self._records[index] = updated
                break
        if self._on_answered is not None:
            self._on_answered(updated)
        return updated

    def clear(self) -> None:
        """Forget every record (waiters keep waiting for the count to be reached again)."""
        self._records.clear()

    async def wait_for(self, count: int) -> None:
        """Return once at least `count` requests are recorded."""
        if len(self._records) >= count:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (count, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        finally:
            self._waiters.remove(entry)
