"""Lanes within one process on the shared Redis quota: an interactive call that must wait takes
over the earliest reservation of this process's sleeping bulk calls.

The shared log cannot put a newcomer before reservations already made: other processes sleep
towards theirs. This process's own bulk calls are another matter. An interactive call whose slot
is later than one a bulk call of this process holds takes that slot, and the bulk call takes the
later one and sleeps on. The log keeps the same times, so the any-window bound is untouched;
only who sends at which time changes. So in one process, as with the local limiter, every
interactive call goes before every bulk call that waits; across processes, the reserve does it.
"""

from __future__ import annotations

import asyncio

__all__ = ["Reservation", "Sleepers"]

_US = 1_000_000


class Reservation:
    """A reservation in the shared log, held by one waiting call: its id, slot (Redis
    microseconds), when that slot comes on this loop's clock, and the call's deadline (a loop
    time; None: none), which a swap never moves it past."""

    __slots__ = ("_wake", "deadline", "due", "member", "slot_us")

    def __init__(self, member: str, deadline: float | None) -> None:
        self.member = member
        self.deadline = deadline
        self.slot_us = 0
        self.due = 0.0
        self._wake: asyncio.Future[None] | None = None

    def hold(self, slot_us: int, wait_us: int) -> None:
        self.slot_us = slot_us
        self.due = asyncio.get_running_loop().time() + wait_us / _US

    def exchange(self, other: Reservation) -> None:
        """Swap what the two hold; wake whichever sleeps, to sleep to its new slot."""
        self.member, other.member = other.member, self.member
        self.slot_us, other.slot_us = other.slot_us, self.slot_us
        self.due, other.due = other.due, self.due
        for held in (self, other):
            if held._wake is not None and not held._wake.done():
                held._wake.set_result(None)


class Sleepers:
    """This process's bulk calls sleeping towards their reserved slot."""

    def __init__(self) -> None:
        self._bulk: list[Reservation] = []

    async def sleep(self, held: Reservation, *, bulk: bool) -> None:
        """Sleep until ``held``'s slot comes; an interactive caller first takes the earliest
        earlier slot a bulk sleeper holds."""
        if bulk:
            self._bulk.append(held)
        else:
            self._take_earlier(held)
        loop = asyncio.get_running_loop()
        try:
            while (left := held.due - loop.time()) > 0:
                held._wake = loop.create_future()
                timer = loop.call_later(left, _wake, held._wake)
                try:
                    await held._wake
                finally:
                    timer.cancel()
                    held._wake = None
        finally:
            if bulk:
                self._bulk.remove(held)

    def _take_earlier(self, held: Reservation) -> None:
        movable = [b for b in self._bulk if b.slot_us < held.slot_us
                   and (b.deadline is None or b.deadline >= held.due)]
        if movable:
            held.exchange(min(movable, key=lambda other: other.slot_us))


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
