"""Why a run stops: one owner of the stop state, shared by the campaign and its dispatcher.

A request made before the dispatcher exists (a signal while the journal opens) is simply the
state the dispatcher finds; nothing is replayed.
"""

from __future__ import annotations

from collections.abc import Callable

from .outcomes import StopReason

__all__ = ["StopState"]


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
