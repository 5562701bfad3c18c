"""``ryze-async``: one call, a fake call, a campaign, a report, the sandbox, the demo.

Exit codes:

* 0 done (every number placed);
* 1 some calls failed, are unknown or were left pending (or the single call failed);
* 2 usage, configuration or input error: the arguments, a setting, a numbers, media or
  journal file the user named (nothing was called because of it);
* 3 the campaign was stopped by the circuit breaker;
* 70 internal error: a bug in ryze-async (``-v`` prints the traceback);
* 130 interrupted.

The token comes from ``--token`` or ``RYZE_TOKEN`` (prefer the variable: command lines are
visible to other users) and is never printed. ``--help`` imports nothing heavy: each command
imports what it uses when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._parser import build_parser

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ryze-async`` and ``python -m ryze_async``; returns the exit code."""
    args = build_parser().parse_args(argv)
    # No argv: we are the program (not a test's or a caller's call), the process is ours.
    owns_process = argv is None
    # argv may hold --token's text: out of this frame's locals before anything can fail
    # (an error tracker records the locals of every frame of a traceback).
    del argv
    # Only now: asyncio, logging and the commands cost more than --help itself.
    from ._commands import run  # noqa: PLC0415

    return run(args, owns_process=owns_process)
