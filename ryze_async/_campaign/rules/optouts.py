"""Opt-out lists (``exclude=``, ``--exclude``): who must not be called, read again when a file
changes.

Failing closed: leaving someone out wrongly costs a call, calling someone who opted out is what
the list exists to prevent. So a person is recognised however either list writes the number (a
personal JID, a Brazilian mobile's old WhatsApp id without the ninth digit: ``person_key``, the
one rule of "the same person", which the journal's dedupe uses too; a float a spreadsheet
wrote), and within a run the list only grows: a reading of a file being rewritten in place
(truncated, half written) or gone does not forget anyone an earlier reading named.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from ... import InvalidRequestError
from ..inputs import Numeric, Position, Untrusted, person_key
from ..inputs.source import NumberSource

__all__ = ["Exclusions"]

_log = logging.getLogger("ryze_async.campaign")
# A whole number a float printed ("5511987654321.0"): not dialable, but who it names is plain.
_WHOLE_FLOAT = re.compile(r"\s*(\+?\d+)\.0+\s*")
#: How many entries that exclude nobody a reading names in its warning.
_SHOWN = 5


class Exclusions:
    """The opt-out files, read again (cheaply: a stat at most once a second) when one changed."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]],
                 normalize: Callable[[str], str]) -> None:
        self._paths = [Path(p) for p in paths]
        self._normalize = normalize
        self._seen: list[tuple[int, int] | None] = [None] * len(self._paths)
        self._keys: set[str] = set()
        self._checked = float("-inf")
        self._reading = False
        self._one_reader = asyncio.Lock()

    async def contains(self, number: str) -> bool:
        if not self._paths:
            return False
        # Held: a number judged while another's re-read is under way waits for it, rather
        # than pass on the list as it was before the edit.
        async with self._one_reader:
            loop_now = asyncio.get_running_loop().time()
            if loop_now - self._checked >= 1.0:
                self._checked = loop_now
                await self.refresh(strict=False)
        return self.holds(number)

    def changed(self) -> bool:
        """For the first byte, where nothing slow may run (the quota already admitted the
        call): has a file changed since it was read? A stat, at most once a second."""
        if self._reading:
            return True  # being read again (by a claim): its new entries are not known yet
        if not self._paths or asyncio.get_running_loop().time() - self._checked < 1.0:
            return False
        for path, seen in zip(self._paths, self._seen, strict=True):
            try:
                st = path.stat()
            except OSError:
                continue  # gone: its last reading stands (see contains)
            if (st.st_mtime_ns, st.st_size) != seen:
                return True
        return False

    def holds(self, number: str) -> bool:
        """On the lists as last read (no look at the files)."""
        return person_key(number) in self._keys

    async def refresh(self, *, strict: bool = True) -> None:
        """Read the files that changed since they were read. ``strict`` (the start): a file
        that cannot be read raises. Mid-run, one being rewritten or gone keeps everyone read
        so far, said once per version of the file (not again at every call)."""
        for i, path in enumerate(self._paths):
            try:
                st = path.stat()
                stamp = (st.st_mtime_ns, st.st_size)
                if stamp == self._seen[i]:
                    continue
                self._reading = True
                try:
                    self._keys |= await self._read(path)
                finally:
                    self._reading = False
            except (OSError, ValueError) as exc:
                if strict:
                    raise
                gone = isinstance(exc, OSError)
                if not (gone and self._seen[i] is None):  # a gone file: said once
                    _log.warning("opt-out list not re-read (%s): using it as last read", exc)
                if gone:
                    self._seen[i] = None  # read again when it is back
                    continue
            self._seen[i] = stamp

    def _key(self, raw: str) -> set[str]:
        try:
            return {person_key(self._normalize(raw))}
        except InvalidRequestError:
            # Not callable is not "names nobody": a hidden row, a negative Excel number, a
            # whole number a float printed still name who opted out. Read as plain text.
            text = str(raw)  # an Untrusted's text, as a plain str
            if isinstance(raw, Numeric):  # with or without the zero a typed number drops
                return self._readings(text, "0" + text)
            whole = _WHOLE_FLOAT.fullmatch(text)
            if whole is None and not isinstance(raw, Untrusted):
                raise
            return {person_key(self._normalize(whole[1] if whole else text))}

    def _readings(self, *texts: str) -> set[str]:
        keys: set[str] = set()
        for text in texts:
            with contextlib.suppress(InvalidRequestError):
                keys.add(person_key(self._normalize(text)))
        if not keys:
            raise InvalidRequestError(f"{texts[0]!r} is no number, with or without a leading 0",
                                      field="number")
        return keys

    async def _read(self, path: Path) -> set[str]:
        keys: set[str] = set()
        unread: list[str] = []
        batches = await NumberSource(path).open(Position())
        async for batch in batches:
            for line, raw in batch.entries:
                try:
                    keys |= self._key(raw)
                except InvalidRequestError as exc:
                    unread.append(f"line {line} ({raw!r}: {exc})")
        if unread:
            _log.warning("opt-out list %s: %d entries are not numbers and exclude nobody; fix "
                         "them if they name someone: %s", path, len(unread),
                         "; ".join(unread[:_SHOWN]))
        return keys
