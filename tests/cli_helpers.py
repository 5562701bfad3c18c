"""Run ``ryze-async`` in this process: the same ``main`` a subprocess runs, without paying for
a fresh interpreter (most of a CLI test's time). ``main`` runs in a worker thread with its own
event loop, so the test's loop keeps serving the fake server meanwhile.

Tests that need a real process (kill -9, signals, ``python -m ryze_async`` itself) still
start one.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import threading
from collections.abc import Iterator, Mapping, Sequence

from ryze_async._cli import main

__all__ = ["run_cli"]

# One command at a time: stdout, stderr and the RYZE_* variables are the process's.
_one_at_a_time = threading.Lock()


@contextlib.contextmanager
def _ryze_env(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("RYZE_")}
    for name in saved:
        del os.environ[name]
    os.environ.update({k: v for k, v in env.items() if k.startswith("RYZE_")})
    try:
        yield
    finally:
        for name in [k for k in os.environ if k.startswith("RYZE_")]:
            del os.environ[name]
        os.environ.update(saved)


def _main(args: Sequence[str], env: Mapping[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with _one_at_a_time, _ryze_env(env), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: usage errors and --help
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


async def run_cli(args: Sequence[str], env: Mapping[str, str]) -> tuple[int, str, str]:
    """``ryze-async ARGS`` with the ``RYZE_*`` variables of ``env``: (exit code, out, err)."""
    return await asyncio.to_thread(_main, args, env)
