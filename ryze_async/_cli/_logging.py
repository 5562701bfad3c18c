"""The CLI's log output: ``-v`` for the per-request lines, and repeated warnings told once.

Ten workers hitting the same unreachable server would print the same warning dozens of times;
the first of each kind is shown, the rest are counted and summed up when the command ends.
A kind is the message template (not its arguments) and the type of the error it reports;
a record logged with ``extra={"each_text": True}`` is a kind per text (a "nothing can be called
until ..." notice with a new time is news, not a repeat).
"""

from __future__ import annotations

import logging
import sys
from collections import Counter

__all__ = ["CliLogging"]

_Kind = tuple[str, object, str]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now: under rich's live display that is a proxy
    printing above the progress bar, so log lines never tear it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _OncePerKind(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.first: dict[_Kind, str] = {}
        self.repeats: Counter[_Kind] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        error = next((type(a).__name__ for a in args if isinstance(a, BaseException)), "")
        # A notice whose words are its news (a new time, say) is one kind per text.
        msg = record.getMessage() if getattr(record, "each_text", False) else record.msg
        kind = (record.name, msg, error)
        if kind in self.first:
            self.repeats[kind] += 1
            return False
        self.first[kind] = record.getMessage()
        return True


class CliLogging:
    """Installs the handler on the ``ryze_async`` logger for one command, then removes it."""

    def __init__(self, verbose: bool) -> None:
        self._handler = _StderrHandler()
        self._handler.setFormatter(logging.Formatter("ryze-async: %(message)s"))
        self._once = _OncePerKind()
        self._handler.addFilter(self._once)
        self._logger = logging.getLogger("ryze_async")
        self._level = logging.DEBUG if verbose else logging.WARNING
        self._previous = self._logger.level

    def __enter__(self) -> CliLogging:
        self._previous = self._logger.level
        self._logger.addHandler(self._handler)
        self._logger.setLevel(self._level)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for kind, count in self._once.repeats.items():
                print(f"ryze-async: ({count} more like: {self._once.first[kind]})",
                      file=sys.stderr)
        finally:
            # main() may run in-process (tests, an embedding program): leave the level as found.
            self._logger.setLevel(self._previous)
            self._logger.removeHandler(self._handler)
