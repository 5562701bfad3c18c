"""What a campaign run is given: the client it calls (a protocol), its fixed settings, and why
it stops.

The stop state (:class:`StopState`) has one owner, shared by the campaign and its dispatcher. A
request made before the dispatcher exists (a signal while the journal opens) is simply the
state the dispatcher finds; nothing is replayed.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .. import CallResult, Media
from .._public import public
from .outcomes import StopReason
from .rules import Rules

if TYPE_CHECKING:  # the client's own aliases, without loading the client
    from .. import BeforeSend, NotSent

__all__ = [
    "AttemptHooks",
    "CampaignClient",
    "PoolClient",
    "SenderFactory",
    "Settings",
    "StopState",
    "StoppedError",
    "call",
]




@public
class CampaignClient(Protocol):
    """What a campaign needs from a client (``RyzeClient`` fits; a test may pass a stub).

    ``before_send`` is awaited before every attempt's first byte; ``on_not_sent`` as soon as
    an attempt is proven refused (429) or never sent, before the client waits to retry.
    """

    async def audio_call(
        self, number: str, *, media: Media, instance: str | None, before_send: BeforeSend,
        on_not_sent: NotSent,
    ) -> CallResult: ...

    async def fake_call(
        self, number: str, *, duration: int | None, instance: str | None,
        before_send: BeforeSend, on_not_sent: NotSent,
    ) -> CallResult: ...


class PoolClient(CampaignClient, Protocol):
    """One sender's client, built for the campaign and closed by it."""

    async def aclose(self) -> None: ...


class SenderFactory(Protocol):
    """A client that builds its like for another token and instance (``RyzeClient`` does:
    ``for_sender``), which a campaign with ``senders=`` needs."""

    def for_sender(self, token: str, instance: str) -> PoolClient: ...


class AttemptHooks(Protocol):
    """One attempt's hooks (``dispatch.Attempt``): the claim before the first byte, the way back."""

    async def before_send(self) -> None: ...
    async def on_not_sent(self) -> None: ...


class StoppedError(Exception):
    """Raised from ``before_send`` once stopping: the client then sends nothing."""


class Settings:
    """The knobs of one run, fixed before it starts."""

    def __init__(
        self, *, media: Media | None, duration: int | None, instance: str | None,
        concurrency: int, drain_timeout: float, max_connection_failures: int,
        max_requeues: int, ingest_batch: int, rules: Rules | None = None,
        exit_outside_window: bool = False, max_unknown_in_a_row: int = 0,
    ) -> None:
        self.media = media
        self.duration = duration
        self.instance = instance
        self.concurrency = concurrency
        self.drain_timeout = drain_timeout
        self.max_connection_failures = max_connection_failures
        self.max_requeues = max_requeues
        self.ingest_batch = ingest_batch
        self.rules = rules if rules is not None else Rules()
        self.exit_outside_window = exit_outside_window
        #: Unknown outcomes in a row of one sender that trip it (0: never).
        self.max_unknown_in_a_row = max_unknown_in_a_row


async def call(
    client: CampaignClient, s: Settings, number: str, hooks: AttemptHooks, instance: str | None,
) -> CallResult:
    """Place one call of the campaign's kind (audio with its media, or fake) on ``instance``."""
    if s.media is not None:
        return await client.audio_call(
            number, media=s.media, instance=instance, before_send=hooks.before_send,
            on_not_sent=hooks.on_not_sent)
    return await client.fake_call(
        number, duration=s.duration, instance=instance, before_send=hooks.before_send,
        on_not_sent=hooks.on_not_sent)


class StopState:
    """The first stop request wins, except that an abort overrides a gentler stop."""

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self.message = ""
        self._listeners: list[Callable[[StopReason], None]] = []

    @property
    def stopping(self) -> bool:
        return self.reason is not None

    def request(self, reason: StopReason, message: str) -> None:
        if self.reason is not None and (reason != "aborted" or self.reason == "aborted"):
            return
        self.reason, self.message = reason, message
        for listener in self._listeners:
            listener(reason)

    def on_request(self, listener: Callable[[StopReason], None]) -> None:
        """Call ``listener`` at every request that changes the state from now on."""
        self._listeners.append(listener)
