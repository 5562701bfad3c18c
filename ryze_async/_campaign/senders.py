"""A campaign's senders: the instances (each a client, a token, a quota) its calls go through.

Workers take a free sender first and a number second, so a number is never tied to a sender
whose quota is spent: a sender is free while fewer than ``slots`` of its calls wait for its
quota, and it is handed back as soon as its call is admitted (the ``sending`` mark) or ends.
A sender whose instance trips the circuit breaker leaves the rotation; its numbers stay pending
for the others.

Staggered start: sender k of n joins the rotation ``k * period / n`` seconds after the first
(``period``: the client's ``rate_period``). Each limiter then opens its windows at its own
phase, so the pool's quota comes in n small bursts spread over the period instead of one
burst of n quotas at the same instant, which stalled the event loop (200 ms at 50 senders).
It costs nothing after the first period: each sender still uses its whole quota every period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from .settings import CampaignClient, PoolClient, SenderFactory

__all__ = ["Lease", "Sender", "SenderPool", "build_senders", "quota_period"]

_log = logging.getLogger("ryze_async.campaign")


@dataclass(eq=False)
class Sender:
    """One instance of the pool; ``name`` is the instance (never the token)."""

    name: str | None
    client: CampaignClient
    conn_failures: int = 0
    #: Outcomes in a row that may have been placed, with no RyzeAPI answer in between.
    unknowns: int = 0
    alive: bool = True


class SenderPool:
    """The free senders, and the record of those that left the rotation."""

    def __init__(self, senders: list[Sender], slots: int) -> None:
        if not senders:
            raise ValueError("a campaign needs at least one sender")
        self.senders = senders
        self._free: asyncio.Queue[Sender] = asyncio.Queue()
        self._slots = max(1, slots)
        self._joins: list[asyncio.TimerHandle] = []
        #: One line per sender that left the rotation (for the log and the summary).
        self.removed: list[str] = []

    def start(self, period: float | None) -> None:
        """Put the senders in the rotation, staggered over ``period`` (None: all at once)."""
        loop = asyncio.get_running_loop()
        step = period / len(self.senders) if period and self.pooled else 0.0
        for k, sender in enumerate(self.senders):
            if k == 0 or not step:
                self._join(sender)
            else:
                self._joins.append(loop.call_later(k * step, self._join, sender))

    def close(self) -> None:
        for handle in self._joins:
            handle.cancel()

    def _join(self, sender: Sender) -> None:
        for _ in range(self._slots):
            self.give_back(sender)

    @property
    def pooled(self) -> bool:
        return len(self.senders) > 1

    @property
    def alive(self) -> int:
        return sum(s.alive for s in self.senders)

    async def take(self) -> Lease:
        """Wait for a free sender still in the rotation."""
        while True:
            sender = await self._free.get()
            if sender.alive:
                return Lease(self, sender)

    def give_back(self, sender: Sender) -> None:
        if sender.alive:
            self._free.put_nowait(sender)

    def remove(self, sender: Sender, reason: str) -> bool:
        """Take ``sender`` out of the rotation; True if it was the last one."""
        if sender.alive:
            sender.alive = False
            note = (f"sender {sender.name!r} left the rotation: {reason}; "
                    f"{self.alive} of {len(self.senders)} senders go on")
            self.removed.append(note)
            _log.error("%s", note)
        return self.alive == 0


class Lease:
    """A worker's hold on one free sender, handed back once (admitted, or the call ended)."""

    def __init__(self, pool: SenderPool, sender: Sender) -> None:
        self._pool = pool
        self.sender = sender
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._pool.give_back(self.sender)


def build_senders(
    client: CampaignClient, senders: Mapping[str, str] | None
) -> list[tuple[str, PoolClient]]:
    """One client per sender, built now so the tokens are not kept (``for_sender``)."""
    if senders is None:
        return []
    if not senders or not all(isinstance(k, str) and k.strip() for k in senders):
        raise ValueError("senders must map one or more instance names to their tokens")
    if not callable(getattr(client, "for_sender", None)):
        raise TypeError("senders= needs a client with for_sender() (e.g. RyzeClient)")
    factory = cast(SenderFactory, client)
    return [(name, factory.for_sender(token, name)) for name, token in senders.items()]


def quota_period(client: CampaignClient) -> float | None:
    """The client's quota period (``RyzeClient.rate_period``), if it keeps a quota."""
    period = getattr(client, "rate_period", None)
    if getattr(client, "rate_limit", None) is None or not isinstance(period, int | float):
        return None
    return float(period)
