"""Exit codes, and the one place an exception that ends a command becomes one.

Only what the user can fix is a usage error (2): the arguments, the configuration, the input
they named. Anything else that escapes a command is a bug in ryze-async and says so (70, BSD's
``EX_SOFTWARE``): blaming the user's input for it would send them hunting in the wrong place.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

__all__ = [
    "EXIT_BREAKER",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_JOURNAL_LOST",
    "EXIT_OK",
    "EXIT_OUTSIDE_WINDOW",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "UsageError",
    "cli_words",
    "exit_for",
]

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_BREAKER = 3
#: ``--exit-outside-window``: nothing can be called until a window opens; start again then.
EXIT_OUTSIDE_WINDOW = 4
#: A PostgreSQL journal's database stayed unreachable mid-campaign longer than the worker's
#: ``--reconnect-deadline`` (a shorter outage is reconnected and the run goes on): start the
#: worker again once the database is back (what was sent is in the journal; an interrupted send
#: is ``unknown``).
EXIT_JOURNAL_LOST = 5
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

#: The options that name a file or folder of the user's; an OSError on one is their input's.
_PATH_OPTIONS = ("numbers", "journal", "media", "csv_out", "dir")


class UsageError(Exception):
    """Bad arguments or configuration: exit code 2, message printed, no traceback."""


# The library names its keywords; on the command line the same setting is an option.
_CLI_WORDS = (("instance= (to the client or the call)", "--instance"), ("token=", "--token"),
              ("instance=", "--instance"), ("base_url", "--base-url"),
              ("rate_limit", "--rate-limit"), ("rate_period", "--rate-period"),
              ("ssl= (or RYZE_CA_FILE)", "--ca-file (or RYZE_CA_FILE)"))


def cli_words(message: str) -> str:
    """A configuration error message as the command line's user knows the settings."""
    for library, option in _CLI_WORDS:
        message = message.replace(library, option)
    return message


def _say(message: str) -> None:
    print(f"ryze-async: {message}", file=sys.stderr)


def _user_file(exc: OSError, args: argparse.Namespace) -> bool:
    """True if ``exc`` is about a path the user named on the command line."""
    if exc.filename is None:
        return False
    named = (getattr(args, option, None) for option in _PATH_OPTIONS)
    # Absolute on both sides: the engine may have resolved a relative path before opening it.
    return os.path.abspath(str(exc.filename)) in {
        os.path.abspath(p) for p in named if isinstance(p, Path)}


def _usage_message(exc: BaseException, args: argparse.Namespace) -> str | None:
    """The error message if ``exc`` is the user's to fix (exit 2), else None."""
    # Imported here: the error tree is only needed once a command ran (--help stays light).
    from ryze_async import InvalidRequestError, JournalError  # noqa: PLC0415

    if isinstance(exc, UsageError):
        return str(exc)
    if isinstance(exc, InvalidRequestError | JournalError):
        # InputError (a numbers file that is no list of numbers), a journal of another
        # campaign or locked by a running one, a setting refused: all the user's to fix.
        return cli_words(str(exc))
    if isinstance(exc, OSError) and _user_file(exc, args):
        return f"cannot use {exc.filename}: {exc.strerror or exc}"
    return None


def exit_for(exc: BaseException, args: argparse.Namespace) -> int:
    """Tell the user about ``exc`` on stderr and return the command's exit code."""
    from ryze_async import (  # noqa: PLC0415 - see above
        JournalConnectionLostError,
        OutcomeUnknownError,
        RyzeError,
    )

    if isinstance(exc, KeyboardInterrupt):
        _say("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, JournalConnectionLostError):  # not the user's input: not 2
        _say(f"error: {exc}")
        return EXIT_JOURNAL_LOST
    if (message := _usage_message(exc, args)) is not None:
        _say(f"error: {message}")
        return EXIT_USAGE
    if isinstance(exc, OutcomeUnknownError):
        _say(f"outcome unknown: {exc} (the call may have been placed: check before calling "
             "again)")
        return EXIT_SOME_FAILED
    if isinstance(exc, RyzeError):
        _say(f"call failed: {exc}")
        return EXIT_SOME_FAILED
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    _say(f"internal error: {name}: {exc}\nThis is a bug in ryze-async, not in your input: "
         "please report it" + ("." if args.verbose else " (-v shows the traceback)."))
    if args.verbose:
        traceback.print_exception(exc, file=sys.stderr)
    return EXIT_INTERNAL
