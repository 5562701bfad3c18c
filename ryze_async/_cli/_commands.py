"""The commands ``call``, ``fake-call``, ``report`` and ``sandbox``, and the dispatch to all.

Each command imports the client, the journal or the fake server when it runs, not before:
``ryze-async --help`` must not pay for them. Errors are not handled by the commands: they go up
to :func:`run`, which hands them to :func:`ryze_async._cli._exits.exit_for`, the one place
that turns an exception into an exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import json
import signal
import sys
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ._exits import EXIT_OK, UsageError, exit_for
from ._logging import CliLogging
from ._parser import load_media, reveal

if TYPE_CHECKING:
    from ryze_async._campaign.journal import JournalCounts, JournalStore, RuleChange
    from ryze_async.testing import FakeRyzeServer, RecordedRequest

__all__ = ["run", "run_command"]


def run(args: argparse.Namespace, *, owns_process: bool = False) -> int:
    """Run the parsed command; every exception it raises becomes an exit code here.
    ``owns_process``: this is the program (``ryze-async``), not a caller's function call."""
    with CliLogging(args.verbose), _number_hints(args.command):
        try:
            if owns_process:
                _preload(args.command)
            return asyncio.run(run_command(args, sys.stdout))
        except (Exception, KeyboardInterrupt) as exc:
            return exit_for(exc, args)


def _preload(command: str) -> None:
    """Import what a command that sends will import as it runs, the cyclic collector paused,
    then freeze what was built (``gc.freeze``).

    The imports leave ~100,000 objects that live as long as the process; the collector would
    scan them again and again while they load and on every later full collection. Paused, then
    moved to the permanent generation, they never are: about 5 % of a one-number campaign's
    CPU (issue 18). Only in a process of the CLI's own: a caller's heap is not frozen. Every
    such command builds the client with its aiohttp transport (a dry run too).
    """
    if command not in ("campaign", "call", "fake-call"):
        return
    gc.disable()
    try:
        from ryze_async._transports import _aiohttp  # noqa: F401
        if command == "campaign":
            from . import _campaign  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()


def _number_hints(command: str) -> contextlib.AbstractContextManager[None]:
    """Refusals of a number name the CLI's flags; commands that read no number do not load
    the number parser for it."""
    if command in ("report", "sandbox"):
        return contextlib.nullcontext()
    from ryze_async._numbers import cli_hints

    return cli_hints()


async def run_command(args: argparse.Namespace, out: TextIO) -> int:
    command: str = args.command
    if command in ("call", "fake-call"):
        return await _call(args, out)
    if command == "campaign":
        from ._campaign import run_campaign_command

        return await run_campaign_command(args, out)
    if command == "report":
        return await _report(args, out)
    if command == "sandbox":
        return await _sandbox(args, out)
    from ._demo import run_demo

    return await run_demo(numbers=args.numbers, rate_limit=args.rate_limit,
                          rate_period=args.rate_period, keep_dir=args.dir, as_json=args.json,
                          out=out)


async def _call(args: argparse.Namespace, out: TextIO) -> int:
    from ryze_async import RyzeClient

    client = RyzeClient(reveal(args.token), args.instance, base_url=args.base_url,
                        rate_limit=args.rate_limit, rate_period=args.rate_period,
                        default_region=args.default_region,
                        number_check=args.number_check or "valid", quota_url=args.quota_url,
                        ssl=args.ca_file)
    async with client:
        if args.command == "call":
            media = load_media(args.media, args.media_url, args.media_base64)
            result = await client.audio_call(args.number, media=media)
        else:
            result = await client.fake_call(args.number, duration=args.duration)
    if args.json:
        print(result.model_dump_json(by_alias=True, exclude_none=True), file=out)
    else:
        print(f"placed: number {result.number} call id {result.call_id} ({result.message})",
              file=out)
    return EXIT_OK


async def _open_journal(target: Path | str, campaign: str | None) -> JournalStore:
    from ryze_async._campaign.journal import Journal, JournalLockedError, open_journal

    from ._campaign import check_campaign_name

    check_campaign_name(target, campaign)
    if isinstance(target, str):  # PostgreSQL: read what the workers committed, change nothing
        return await open_journal(target, campaign=campaign, read_only=True)
    try:
        return await Journal.open(target, create=False)
    except JournalLockedError:  # a campaign is running on it: read what it has committed
        return await Journal.open(target, create=False, read_only=True)


def _report_targets(args: argparse.Namespace) -> tuple[Path | None, bool, Path | None]:
    """(--csv path, whether stdout carries the numbers, --format jsonl's file); checked."""
    csv_out: Path | None = args.csv_out
    jsonl = args.format == "jsonl"
    if args.out is not None and not jsonl:
        raise UsageError("--out goes with --format jsonl")
    if args.input_file is not None and csv_out is None:
        raise UsageError("--input goes with --csv")
    to_stdout = (csv_out is not None and str(csv_out) == "-") or (jsonl and args.out is None)
    if jsonl and csv_out is not None and str(csv_out) == "-":
        raise UsageError("--csv - and --format jsonl both want stdout: give --out FILE")
    if to_stdout and args.json:
        raise UsageError("--json and the numbers both want stdout: write them to a file")
    for option, path in (("--csv", csv_out), ("--html", args.html_out), ("--out", args.out)):
        if path is not None and str(path) != "-" and not path.parent.is_dir():
            raise UsageError(f"{option} {path}: no such folder: {path.parent}")
    return csv_out, to_stdout, args.out if jsonl else None


async def _report(args: argparse.Namespace, out: TextIO) -> int:
    from ryze_async._campaign.journal import describe
    from ryze_async._campaign.outcomes import summary_from_counts

    from ._campaign import print_json
    from ._progress import format_summary

    csv_out, to_stdout, jsonl_out = _report_targets(args)
    written: list[str] = []
    journal = await _open_journal(args.journal, args.campaign)
    try:
        counts = await journal.counts()
        trail = await journal.rule_changes()
        if csv_out is not None:
            csv_stdout = str(csv_out) == "-"
            rows = await _export_csv(journal, out if csv_stdout else csv_out, args.input_file)
            written.append(f"wrote {rows} rows to {'stdout' if csv_stdout else csv_out}")
        if args.format == "jsonl":
            rows = await journal.export_jsonl(out if jsonl_out is None else jsonl_out)
            written.append(f"wrote {rows} JSON lines to {jsonl_out or 'stdout'}")
        if args.html_out is not None:
            written.append(await _html(journal, counts, trail, args))
    finally:
        await journal.close()
    summary = summary_from_counts(counts, counts.elapsed, None, "")
    # stdout carries exactly one thing (the JSON object or the numbers); the rest: stderr.
    human = sys.stderr if args.json or to_stdout else out
    if not args.json:
        print(format_summary(summary, describe(args.journal)), file=human)
        for change in trail:
            print(f"rule changed on purpose at {change.at.astimezone(UTC).isoformat()}: "
                  f"{change.rule} {change.old!r} -> {change.new!r}", file=human)
    for line in written:
        print(line, file=human)
    if args.json:
        # A PostgreSQL campaign also says how many workers hold numbers now, and how many
        # numbers they claimed and have not called yet (counted in ``pending``).
        extra: dict[str, object] = {
            k: getattr(counts, k) for k in ("workers", "claimed") if hasattr(counts, k)}
        extra["rule_changes"] = [
            {"at": c.at.astimezone(UTC).isoformat(), "rule": c.rule, "old": c.old,
             "new": c.new} for c in trail]
        print_json(summary, args.journal, out, campaign=args.campaign, extra=extra)
    return EXIT_OK


async def _export_csv(journal: JournalStore, target: Path | TextIO, source: Path | None) -> int:
    if source is None:
        return await journal.export_csv(target)
    from ._report_input import export_with_input

    return await export_with_input(journal, source, target)


async def _html(journal: JournalStore, counts: JournalCounts, trail: list[RuleChange],
                args: argparse.Namespace) -> str:
    from ._report_html import render_report, write_report

    data = await journal.report_data()
    # The page's title: the campaign's name in a database, the file's name otherwise (never
    # the URL: it may hold a password).
    name = args.campaign if isinstance(args.journal, str) else args.journal.name
    # ``--quota`` (calls per minute) overrides what the journal recorded.
    quota = (args.quota, 60.0) if args.quota is not None else data.quota
    page = render_report(name, counts, data, quota, trail)
    await asyncio.to_thread(write_report, args.html_out, page)
    return f"wrote the HTML report to {args.html_out}"


def _on_stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event | None) -> None:
    """Route SIGINT/SIGTERM to ``stop.set`` (None: back to the default handling)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            if stop is None:
                loop.remove_signal_handler(sig)
            else:
                loop.add_signal_handler(sig, stop.set)


async def _sandbox(args: argparse.Namespace, out: TextIO) -> int:
    from ryze_async.testing import FakeRyzeServer

    with contextlib.ExitStack() as files:
        record = None if args.record is None else _Record(files.enter_context(
            _record_file(args.record)))
        server = FakeRyzeServer(token=args.token, instances=(args.instance,),
                                rate_limit=args.rate_limit, rate_period=args.rate_period,
                                window=args.window, port=args.port, on_answered=record)
        await _serve_sandbox(server, args, out)
    return EXIT_OK


async def _serve_sandbox(server: FakeRyzeServer, args: argparse.Namespace, out: TextIO) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    _on_stop_signals(loop, stop)
    try:
        async with server:
            # The sandbox's own well-known token, not a secret: printed so people can use it.
            print(f"sandbox: fake RyzeAPI on {server.url} (instance {args.instance!r}, "
                  f"{args.rate_limit} calls per {args.rate_period:g}s, {args.window} window)\n"
                  f"export RYZE_BASE_URL={server.url} RYZE_TOKEN={args.token} "
                  f"RYZE_INSTANCE={args.instance}\nCtrl-C to stop.", file=out, flush=True)
            await stop.wait()
            print(f"sandbox: stopped after {len(server.requests)} requests "
                  f"({len(server.placed_calls)} calls placed)", file=out, flush=True)
    except OSError as exc:
        raise UsageError(f"cannot listen on port {args.port}: {exc}") from None
    finally:
        _on_stop_signals(loop, None)


def _record_file(path: Path) -> TextIO:
    try:
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the record {path}: {exc.strerror or exc}") from None


class _Record:
    """``sandbox --record FILE``: one JSON line per answered request, appended and flushed at
    once, so another process can follow it while the sandbox runs. No header, so no token."""

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, request: RecordedRequest) -> None:
        body = request.json if isinstance(request.json, dict) else {}
        number = body.get("number")
        line = {"time": datetime.datetime.fromtimestamp(request.received_at, datetime.UTC)
                .isoformat(timespec="microseconds"),
                "number": number if isinstance(number, str) else None,
                "instance": request.instance, "status": request.status,
                "route": request.route}
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

