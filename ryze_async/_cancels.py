"""Cancels that a library swallowed, raised again: a cancelled call must end cancelled.

On Python 3.11 ``asyncio.wait_for`` returns its inner result when the awaiting task is cancelled
just as that result arrives (CPython gh-86296, fixed in 3.12). redis-py awaits every command's
write through it, so a cancel landing then vanished: the quota admitted the call and it went on
to be sent, and a sender loop (``except Exception``) never stopped. The cancel request is still
counted on the task (``Task.cancelling()``), so it can be told apart from a cancel that was
delivered and handled (``asyncio.timeout`` takes its own back with ``uncancel``).
"""

from __future__ import annotations

import asyncio

__all__ = ["pending_cancels", "resurface_cancel"]


def pending_cancels() -> int:
    """The current task's cancel requests not yet taken back (0 outside a task)."""
    task = asyncio.current_task()
    return 0 if task is None else task.cancelling()


def resurface_cancel(before: int) -> None:
    """Raise ``CancelledError`` if a cancel was requested since ``pending_cancels()`` returned
    `before` and was swallowed on the way back (nobody raised it nor took it back)."""
    if pending_cancels() > before:
        raise asyncio.CancelledError
