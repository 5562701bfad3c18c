"""``ryze-async``: one call, a fake call, a campaign, a report, the sandbox, the demo.

Exit codes: 0 done; 1 some calls failed or unknown (or a single call failed); 2 usage or
configuration error; 3 stopped by the circuit breaker; 130 interrupted. The token comes from
``--token`` or ``RYZE_TOKEN`` (prefer the variable: command lines are visible to other users)
and is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ryze_async import (
    InvalidRequestError,
    Media,
    OutcomeUnknownError,
    RyzeClient,
    RyzeError,
    __version__,
)

from ._campaign._counts import summary_from_counts
from ._campaign._journal import Journal, JournalError, JournalLockedError
from ._cli_campaign import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    CampaignJob,
    UsageError,
    cli_words,
    exit_code,
    print_json,
    run_campaign_job,
)
from ._cli_logging import CliLogging
from ._cli_progress import format_summary

__all__ = ["main"]



def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _connection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (default: the RYZE_* environment variables)")
    g.add_argument("--token", help="API token (prefer RYZE_TOKEN: arguments are visible in ps)")
    g.add_argument("--instance", help="instance name (RYZE_INSTANCE)")
    g.add_argument("--base-url", help="API base URL (RYZE_BASE_URL; default RyzeAPI's)")
    g.add_argument("--rate-limit", type=_positive_int, default=100,
                   help="calls allowed per period (default 100)")
    g.add_argument("--rate-period", type=_positive_float, default=60.0,
                   help="quota period in seconds (default 60)")
    g.add_argument("--default-region", metavar="CC",
                   help="read national-format numbers as this country's, e.g. BR "
                   "(RYZE_DEFAULT_REGION; default: numbers must carry their country code)")
    g.add_argument("--number-check", choices=("valid", "possible"), default="valid",
                   help="'valid' (default): numbers known to be assigned; 'possible': any "
                   "plausible length")


def _media_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--media", type=Path, help="audio file (mp3, ogg, wav, m4a...)")
    g.add_argument("--media-url", help="public http(s) URL of the audio")
    if not required:
        g.add_argument("--fake", action="store_true", help="fake calls (ring, no audio)")
    else:
        g.add_argument("--media-base64", help="the audio as base64")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ryze-async", description="RyzeAPI WhatsApp voice calls: single calls and "
        "crash-safe campaigns that never call anyone twice.",
        epilog="Exit codes: 0 done, 1 some calls failed or unknown, 2 usage/config error, "
        "3 stopped by the circuit breaker, 130 interrupted.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log more, down to one line per request")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("call", help="place one audio call")
    p.add_argument("number")
    _media_options(p, required=True)
    _connection_options(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("fake-call", help="ring a number (no audio)")
    p.add_argument("number")
    p.add_argument("--duration", type=int, help="seconds to ring, 1-60 (server default 8)")
    _connection_options(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("campaign", help="call every number of a CSV; run again to resume")
    p.add_argument("numbers", type=Path,
                   help="CSV (UTF-8, or UTF-16 with BOM): the column headed number/phone/... "
                        "or the first column")
    p.add_argument("--journal", type=Path, required=True, help="journal file (the campaign)")
    p.add_argument("--column", type=_column, metavar="NAME|INDEX",
                   help="the numbers' column: its header, or its position (1 = first)")
    _media_options(p, required=False)
    p.add_argument("--duration", type=int, help="with --fake: seconds to ring")
    _connection_options(p)
    p.add_argument("--concurrency", type=_positive_int, default=10,
                   help="calls in progress at once (default 10)")
    p.add_argument("--retry-unknown", action="store_true",
                   help="call 'unknown' numbers again (they may have been called already)")
    p.add_argument("--retry-failed", action="store_true", help="call 'failed' numbers again")
    p.add_argument("--force", action="store_true",
                   help="resume even if the media, instance or call kind changed")
    p.add_argument("--drain-timeout", type=_positive_float, default=30.0,
                   help="on Ctrl-C, seconds to wait for calls in flight (default 30)")
    p.add_argument("--log-interval", type=_positive_float, default=10.0,
                   help="seconds between progress lines when not on a terminal")
    p.add_argument("--json", action="store_true",
                   help="print the summary as JSON on the last line of stdout")

    p = sub.add_parser("report", help="summarise a journal; --csv writes one row per number")
    p.add_argument("journal", type=Path)
    p.add_argument("--csv", type=Path, dest="csv_out",
                   help="write every number to this CSV ('-': stdout)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("sandbox", help="run the fake RyzeAPI server on 127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument("--rate-limit", type=_positive_int, default=100)
    p.add_argument("--rate-period", type=_positive_float, default=60.0)
    p.add_argument("--token", default="sandbox-token", help="the token the sandbox accepts")
    p.add_argument("--instance", default="sandbox", help="the instance it serves")

    p = sub.add_parser("demo", help="a real campaign against an in-process sandbox")
    p.add_argument("--numbers", type=_positive_int, default=300, help="numbers to call")
    p.add_argument("--rate-limit", type=_positive_int, default=20)
    p.add_argument("--rate-period", type=_positive_float, default=1.0)
    p.add_argument("--dir", type=Path, help="keep the demo's files (CSV, audio, journal) here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON last")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ryze-async`` and ``python -m ryze_async``; returns the exit code."""
    args = build_parser().parse_args(argv)
    with CliLogging(args.verbose):
        try:
            return asyncio.run(_dispatch(args, sys.stdout))
        except UsageError as exc:
            print(f"ryze-async: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("ryze-async: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED


async def _dispatch(args: argparse.Namespace, out: TextIO) -> int:
    command: str = args.command
    if command in ("call", "fake-call"):
        return await _call(args, out)
    if command == "campaign":
        job = _campaign_job(args)
        summary = await run_campaign_job(job, out)
        if args.json:
            print_json(summary, job.journal, out)
        return exit_code(summary)
    if command == "report":
        return await _report(args, out)
    if command == "sandbox":
        return await _sandbox(args, out)
    from ._demo import run_demo  # noqa: PLC0415 - only the demo needs the sandbox and wave

    return await run_demo(numbers=args.numbers, rate_limit=args.rate_limit,
                          rate_period=args.rate_period, keep_dir=args.dir, as_json=args.json,
                          out=out)


def _load_media(path: Path | None, url: str | None, b64: str | None = None) -> Media | None:
    option = "--media" if path is not None else "--media-url" if url is not None else (
        "--media-base64")
    try:
        if path is not None:
            return Media.from_file(path)
        if url is not None:
            return Media.from_url(url)
        if b64 is not None:
            return Media.from_base64(b64)
    except InvalidRequestError as exc:
        raise UsageError(f"{option}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{option}: cannot read the media: {exc}") from None
    return None


def _column(text: str) -> str | int:
    if text.strip().isdigit():
        if int(text) < 1:
            raise argparse.ArgumentTypeError("a column index is 1-based: the first column is 1")
        return int(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("empty column name")
    return text


def _campaign_job(args: argparse.Namespace) -> CampaignJob:
    media = _load_media(args.media, args.media_url)
    if media is None and not args.fake:
        raise UsageError("give --media FILE, --media-url URL or --fake")
    return CampaignJob(
        numbers=args.numbers, journal=args.journal, media=media, fake=args.fake,
        duration=args.duration, token=args.token, instance=args.instance,
        base_url=args.base_url, rate_limit=args.rate_limit, rate_period=args.rate_period,
        concurrency=args.concurrency, retry_unknown=args.retry_unknown,
        retry_failed=args.retry_failed, force=args.force, drain_timeout=args.drain_timeout,
        tty=sys.stdout.isatty(), log_interval=args.log_interval, column=args.column,
        default_region=args.default_region, number_check=args.number_check,
    )


async def _call(args: argparse.Namespace, out: TextIO) -> int:
    try:
        client = RyzeClient(args.token, args.instance, base_url=args.base_url,
                            rate_limit=args.rate_limit, rate_period=args.rate_period,
                            default_region=args.default_region, number_check=args.number_check)
    except InvalidRequestError as exc:
        raise UsageError(cli_words(str(exc))) from None
    async with client:
        try:
            if args.command == "call":
                media = _load_media(args.media, args.media_url, args.media_base64)
                result = await client.audio_call(args.number, media=media)
            else:
                result = await client.fake_call(args.number, duration=args.duration)
        except InvalidRequestError as exc:
            raise UsageError(cli_words(str(exc))) from None
        except OutcomeUnknownError as exc:
            print(f"ryze-async: outcome unknown: {exc} (the call may have been placed: check "
                  "before calling again)", file=sys.stderr)
            return EXIT_SOME_FAILED
        except RyzeError as exc:
            print(f"ryze-async: call failed: {exc}", file=sys.stderr)
            return EXIT_SOME_FAILED
    if args.json:
        print(result.model_dump_json(by_alias=True, exclude_none=True), file=out)
    else:
        print(f"placed: number {result.number} call id {result.call_id} ({result.message})",
              file=out)
    return EXIT_OK


async def _report(args: argparse.Namespace, out: TextIO) -> int:
    csv_out: Path | None = args.csv_out
    to_stdout = csv_out is not None and str(csv_out) == "-"
    if to_stdout and args.json:
        raise UsageError("--csv - and --json both want stdout: write the CSV to a file")
    if csv_out is not None and not to_stdout and not csv_out.parent.is_dir():
        raise UsageError(f"--csv {csv_out}: no such folder: {csv_out.parent}")
    try:
        try:
            journal = await Journal.open(args.journal, create=False)
        except JournalLockedError:
            journal = await Journal.open(args.journal, create=False, read_only=True)
        async with journal:
            counts = await journal.counts()
            rows = None if csv_out is None else await journal.export_csv(
                out if to_stdout else csv_out)
    except JournalError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--csv {csv_out}: cannot write: {exc.strerror or exc}") from None
    summary = summary_from_counts(counts, counts.elapsed, None, "")
    # stdout carries exactly one thing (the JSON object or the CSV); the rest goes to stderr.
    human = sys.stderr if args.json or to_stdout else out
    if not args.json:
        print(format_summary(summary, str(args.journal)), file=human)
    if rows is not None:
        print(f"wrote {rows} rows to {'stdout' if to_stdout else csv_out}", file=human)
    if args.json:
        data = summary.as_dict()
        data["journal"] = str(args.journal)
        print(json.dumps(data, sort_keys=True), file=out)
    return EXIT_OK


async def _sandbox(args: argparse.Namespace, out: TextIO) -> int:
    from ryze_async.testing import FakeRyzeServer  # noqa: PLC0415 - server side only here

    server = FakeRyzeServer(token=args.token, instances=(args.instance,),
                            rate_limit=args.rate_limit, rate_period=args.rate_period,
                            port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with server:
            # The sandbox's own well-known token, not a secret: printed so people can use it.
            print(f"sandbox: fake RyzeAPI on {server.url} (instance {args.instance!r}, "
                  f"{args.rate_limit} calls per {args.rate_period:g}s)\n"
                  f"export RYZE_BASE_URL={server.url} RYZE_TOKEN={args.token} "
                  f"RYZE_INSTANCE={args.instance}\nCtrl-C to stop.", file=out, flush=True)
            await stop.wait()
            print(f"sandbox: stopped after {len(server.requests)} requests "
                  f"({len(server.placed_calls)} calls placed)", file=out, flush=True)
    except OSError as exc:
        raise UsageError(f"cannot listen on port {args.port}: {exc}") from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
    return EXIT_OK
