"""An asyncio event loop whose clock is virtual: waiting costs no real time.

`VirtualTimeLoop` is a `SelectorEventLoop` whose `time()` is a counter. Whenever the loop would
block (no callback ready, no I/O ready), the clock jumps straight to the next timer instead, so
``await asyncio.sleep(3600)`` returns at once with ``loop.time()`` exactly 3600 s later. Real I/O
and `call_soon_threadsafe` still work: the real selector is polled without blocking first.

Rules of the virtual clock:
- It only moves when the loop has nothing else to do, so code between two awaits takes no time.
- Work handed to a thread with `run_in_executor` (e.g. `getaddrinfo`) freezes the clock: the loop
  waits for it in real time and virtual timers cannot overtake it.
- A timer that keeps coming due "now" without the clock moving (e.g. aiolimiter re-arming itself
  for a float-rounding remainder) advances the clock by 1 us, as real time would; otherwise such
  a loop would spin forever (looptime 0.9 hangs on exactly this).
- If nothing can ever happen (no timer, no ready callback, no executor job, and no I/O within a
  short real grace period), the loop raises RuntimeError("... deadlock ...") instead of hanging.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import sys
import weakref
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = ["VirtualTimeLoop", "run_virtual"]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

# Real seconds to wait for outside I/O before declaring a deadlock (a thread may be about to call
# call_soon_threadsafe, or loopback data may be in flight).
_DEADLOCK_GRACE = 0.05
# How far the clock moves when only timers that are already due keep the loop busy.
_SPIN_TICK = 1e-6


class _VirtualSelector(selectors.BaseSelector):
    """Delegates registration to a real selector; `select` advances the virtual clock."""

    def __init__(self, real: selectors.BaseSelector, start: float) -> None:
        self._real = real
        self.now = start
        self.real_waits = 0  # executor jobs in flight: real time must pass, virtual time waits
        self.loop: weakref.ref[VirtualTimeLoop] | None = None

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready:
            return ready
        if timeout is not None and timeout <= 0:
            if self._only_due_timers():
                self.now += max(_SPIN_TICK, 4 * math.ulp(self.now))
            return []
        if self.real_waits:
            # An executor job will report through the self-pipe; until then time stands still.
            return self._real.select(None)
        if timeout is None:
            ready = self._real.select(_DEADLOCK_GRACE)
            if ready:
                return ready
            raise RuntimeError(
                "VirtualTimeLoop deadlock: no timer is scheduled, no callback is ready, no "
                "executor job is running and no I/O arrived, so the awaited event can never happen"
            )
        self.now += timeout
        return []

    def _only_due_timers(self) -> bool:
        """True when the loop polls only because a timer is already due (nothing else ready)."""
        loop = self.loop() if self.loop is not None else None
        if loop is None:
            return False
        # Private attributes of BaseEventLoop, stable since 3.4; if they vanish, never tick.
        return not getattr(loop, "_ready", True) and not getattr(loop, "_stopping", True)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on virtual time, starting at `start` seconds."""

    def __init__(self, *, start: float = 0.0) -> None:
        if not math.isfinite(start):
            raise ValueError(f"start must be a finite number of seconds, not {start!r}")
        self._vselector = _VirtualSelector(selectors.DefaultSelector(), float(start))
        super().__init__(self._vselector)
        self._vselector.loop = weakref.ref(self)

    def time(self) -> float:
        return self._vselector.now

    def run_in_executor(
        self,
        executor: Executor | None,
        func: Callable[[*_Ts], _T],
        *args: *_Ts,
    ) -> asyncio.Future[_T]:
        future = super().run_in_executor(executor, func, *args)
        self._vselector.real_waits += 1
        future.add_done_callback(self._real_wait_done)
        return future

    def _real_wait_done(self, _future: asyncio.Future[Any]) -> None:
        self._vselector.real_waits -= 1

    # `timeout` mirrors the base method's signature (3.12+); it is not ours to replace.
    async def shutdown_default_executor(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        # The executor's threads are joined in a helper thread that reports back through
        # call_soon_threadsafe: real time has to pass for that.
        self._vselector.real_waits += 1
        try:
            if sys.version_info >= (3, 12):
                await super().shutdown_default_executor(timeout)
            else:
                await super().shutdown_default_executor()
        finally:
            self._vselector.real_waits -= 1


def run_virtual(coro: Coroutine[Any, Any, _T], *, start: float = 0.0) -> _T:
    """Run `coro` to completion on a fresh `VirtualTimeLoop`, then close the loop cleanly.

    Like `asyncio.run`: remaining tasks are cancelled, async generators and the default executor
    are shut down. The loop is not installed as the thread's current event loop.
    """
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(start=start)) as runner:
        return runner.run(coro)
