"""The ``ryze-async`` argument parser.

Building it and printing ``--help`` loads argparse and nothing heavy: no aiohttp, pydantic,
rich, sqlite3, client or campaign engine (the commands import those when they run). The token
becomes a ``Secret`` here, so no namespace, job or frame of the CLI holds its plain text, and
its text comes back (``reveal``) only when a client is built; the media options become a
``Media`` (``load_media``) when a command runs.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ryze_async._version import __version__

from ._exits import UsageError

if TYPE_CHECKING:
    from ryze_async import Media
    from ryze_async._config import Secret

__all__ = ["build_parser", "load_media", "reveal"]

_EPILOG = ("Exit codes: 0 done, 1 some calls failed or unknown, 2 usage/config/input error, "
           "3 stopped by the circuit breaker, 4 nothing can be called before the next calling "
           "window (--exit-outside-window: run it again then), 5 the PostgreSQL journal's "
           "database stayed unreachable past --reconnect-deadline (start again once it is "
           "back), 70 internal error (a bug), "
           "130 interrupted.")

_CAMPAIGN_EXAMPLE = """example:
  export RYZE_TOKEN=... RYZE_INSTANCE=my-instance
  ryze-async campaign numbers.xlsx --sheet Contacts --column Phone \\
      --journal spring.db --media message.mp3 --default-region BR --metrics-port 9464
  ryze-async report spring.db --html spring.html      # charts, counts, failures

Run the same command again to resume: nobody already called is called again.
""" + _EPILOG


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


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 0-65535")
    return value


def _secret(text: str) -> Secret:
    from ryze_async._config import Secret  # noqa: PLC0415 - only when --token is given

    return Secret(text)


def _column(text: str) -> str | int:
    if text.strip().isdigit():
        if int(text) < 1:
            raise argparse.ArgumentTypeError("a column index is 1-based: the first column is 1")
        return int(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("empty column name")
    return text


def _journal_target(text: str) -> str | Path:
    """A ``postgresql://`` URL as given (a database of campaigns), anything else a file path."""
    scheme, sep, _ = text.partition("://")
    return text if sep and scheme.lower() in ("postgresql", "postgres") else Path(text)


def _campaign_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("--campaign", metavar="NAME",
                   help="with a postgresql:// journal (required there): the campaign's name; "
                   "every process run with the same journal and name shares the work")


def _worker_options(p: argparse.ArgumentParser) -> None:
    # Checked by the campaign (one rule, exit 2 before any connection), not here.
    g = p.add_argument_group("a postgresql:// journal's worker")
    g.add_argument("--lease", type=float, metavar="SECONDS",
                   help="how long this worker's claims outlive its last heartbeat (one every "
                   "third of it) before another worker takes them: a killed worker's numbers "
                   "come back after about this long (default 30; >= 1)")
    g.add_argument("--reconnect-deadline", type=float, metavar="SECONDS",
                   help="a lost connection to the database is tried again (backoff with "
                   "jitter) this long before the worker gives up with exit 5 (default 60; "
                   "0: at once)")


def _connection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (default: the RYZE_* environment variables)")
    g.add_argument("--token", type=_secret,
                   help="API token (prefer RYZE_TOKEN: arguments are visible in ps)")
    g.add_argument("--instance", help="instance name (RYZE_INSTANCE)")
    g.add_argument("--base-url", help="API base URL (RYZE_BASE_URL; default RyzeAPI's)")
    g.add_argument("--ca-file", metavar="PATH",
                   help="trust only the CA certificates in this PEM file or hashed directory "
                   "(RYZE_CA_FILE; default: the system's)")
    g.add_argument("--rate-limit", type=_positive_int, default=100,
                   help="calls allowed per period (default 100)")
    g.add_argument("--rate-period", type=_positive_float, default=60.0,
                   help="quota period in seconds (default 60)")
    g.add_argument("--quota-url", metavar="redis://HOST:PORT/DB",
                   help="share the token's quota with every process using this Redis "
                   "(rediss:// for TLS; redis+cluster://H:P,H:P/0 for a Redis Cluster; "
                   "redis+sentinel://H:P,H:P/MASTER/DB through Sentinel) "
                   "(RYZE_QUOTA_URL, preferred if it holds a password; the 'redis' extra)")
    g.add_argument("--default-region", metavar="CC",
                   help="read national-format numbers as this country's, e.g. BR "
                   "(RYZE_DEFAULT_REGION; default: numbers must carry their country code)")
    g.add_argument("--number-check", choices=("valid", "possible"),
                   help="'valid' (default; a campaign's resume: the recorded one): numbers "
                   "known to be assigned; 'possible': any plausible length")


def _media_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--media", type=Path, help="audio file (mp3, ogg, wav, m4a...)")
    g.add_argument("--media-url", help="public http(s) URL of the audio")
    g.add_argument("--media-base64", metavar="BASE64",
                   help="the audio as base64 (arguments are visible in ps: prefer --media)")
    if not required:
        g.add_argument("--fake", action="store_true", help="fake calls (ring, no audio)")


def _json_option(p: argparse.ArgumentParser, what: str = "the result") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def _calls(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("call", help="place one audio call")
    p.add_argument("number", help="the number to call, with its country code (or "
                   "--default-region)")
    _media_options(p, required=True)
    _connection_options(p)
    _json_option(p)

    p = sub.add_parser("fake-call", help="ring a number (no audio)")
    p.add_argument("number", help="the number to ring, with its country code (or "
                   "--default-region)")
    p.add_argument("--duration", type=int, help="seconds to ring, 1-60 (server default 8)")
    _connection_options(p)
    _json_option(p)


def _campaign(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("campaign", help="call every number of a list; run again to resume",
                       epilog=_CAMPAIGN_EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("numbers", type=Path,
                   help="the numbers: CSV (UTF-8, or UTF-16 with BOM), .xlsx (needs the "
                        "'excel' extra) or JSON Lines (.jsonl/.ndjson: {\"number\": ...} per "
                        "line); the column headed number/phone/... or the first column")
    p.add_argument("--journal", type=_journal_target, required=True,
                   help="journal file (the campaign), or postgresql://USER@HOST:PORT/DB "
                   "with --campaign (several workers; the postgres extra)")
    _campaign_name(p)
    _worker_options(p)
    p.add_argument("--column", type=_column, metavar="NAME|INDEX",
                   help="the numbers' column (CSV, xlsx) or key (JSON Lines): its header, or "
                        "its position (1 = first)")
    p.add_argument("--sheet", metavar="NAME|INDEX",
                   help="xlsx: the sheet to read, by name or 1-based position among the "
                        "visible tabs (default: the first visible one)")
    _media_options(p, required=False)
    p.add_argument("--duration", type=int, help="with --fake: seconds to ring")
    _connection_options(p)
    p.add_argument("--concurrency", type=_positive_int, default=10,
                   help="calls in progress at once (default 10)")
    p.add_argument("--senders", type=Path, metavar="FILE",
                   help="a pool of instances: an owner-only CSV with columns instance,token "
                        "(replaces --instance/--token; recorded by path, a resume without it "
                        "reads it again)")
    p.add_argument("--retry-unknown", action="store_true",
                   help="call 'unknown' numbers again (they may have been called already)")
    p.add_argument("--retry-failed", action="store_true", help="call 'failed' numbers again")
    p.add_argument("--force", action="store_true",
                   help="resume even if the media, instance or call kind changed")
    p.add_argument("--drain-timeout", type=_positive_float, default=30.0,
                   help="on Ctrl-C, seconds to wait for calls in flight (default 30)")
    p.add_argument("--log-interval", type=_positive_float, default=10.0,
                   help="seconds between progress lines when not on a terminal")
    p.add_argument("--timeout", type=_positive_float, default=30.0,
                   help="seconds each request may take (default 30)")
    p.add_argument("--max-retries", type=_non_negative_int, default=3,
                   help="resends of a request that provably never reached the server, and "
                        "of a 429 (default 3); never of one that may have")
    p.add_argument("--max-unknown-in-a-row", type=_non_negative_int, default=5, metavar="K",
                   help="stop (exit 3, the rest left pending) after K calls in a row of one "
                        "sender end unknown with no answer from RyzeAPI in between (a proxy's "
                        "error page, a redirect, timeouts): the cause is not the numbers. A "
                        "pool's sender leaves the rotation instead (default 5; 0: never)")
    p.add_argument("--metrics-port", type=_port, metavar="PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics while the "
                        "campaign runs (needs the 'metrics' extra; 0: any free port)")
    p.add_argument("--metrics-host", default="127.0.0.1",
                   help="address the metrics listen on (default 127.0.0.1: this host only)")
    _rule_options(p)
    _json_option(p, "the summary, on the last line of stdout,")


def _instant(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add an offset such as "
                                         "-03:00 or Z")
    return at


def _rule_options(p: argparse.ArgumentParser) -> None:
    """The operator's rules: none is on by default (the law that applies is the user's)."""
    # No default (None): a flag left out is a rule not given, and the recorded one applies.
    p.add_argument("--call-window", action="append", metavar="'DAYS HH:MM-HH:MM'",
                   help="call only inside this window of the called person's local time, e.g. "
                        "'Mon-Fri 09:00-20:00' (repeatable; default: none, any time: set the "
                        "hours the law where you call allows). A number whose country spans "
                        "several zones is called only when all of them are inside")
    p.add_argument("--timezone", metavar="ZONE",
                   help="the zone of numbers whose zone the number does not tell (an IANA "
                        "name such as America/Sao_Paulo); without it they wait")
    p.add_argument("--exit-outside-window", action="store_true",
                   help="when nothing can be called until a window opens (or --not-before), "
                        "stop with exit code 4 instead of waiting (for a scheduler)")
    p.add_argument("--exclude", action="append", type=Path, metavar="FILE",
                   help="an opt-out list (read like the numbers; repeatable): its numbers are "
                        "skipped, even if it is edited while the campaign runs")
    p.add_argument("--not-before", type=_instant, metavar="ISO",
                   help="call nobody before this time (ISO 8601 with zone, e.g. "
                        "2026-03-09T09:00-03:00)")
    p.add_argument("--not-after", type=_instant, metavar="ISO",
                   help="call nobody from this time on: numbers still pending then end "
                        "'expired' (skipped)")
    p.add_argument("--change-rules", action="store_true",
                   help="a resumed campaign runs by the rules its journal recorded, and one "
                        "given differently is refused: change them on purpose with this (the "
                        "journal keeps the change, and 'report' shows it)")
    p.add_argument("--dry-run", action="store_true",
                   help="read the list, apply every rule and say what would happen; call "
                        "nobody, write no journal (an existing one is read, read-only: "
                        "what resuming it would do)")


def _tools(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="summarise a journal; --csv/--html/--format jsonl")
    p.add_argument("journal", type=_journal_target,
                   help="journal file, or postgresql://... with --campaign")
    _campaign_name(p)
    p.add_argument("--csv", type=Path, dest="csv_out",
                   help="write every number to this CSV ('-': stdout)")
    p.add_argument("--input", type=Path, dest="input_file", metavar="NUMBERS.csv",
                   help="with --csv: add the input's columns (name, notes, ...) matched by "
                        "line; only the very file the journal read (checked by its "
                        "fingerprint)")
    p.add_argument("--html", type=Path, dest="html_out", metavar="FILE",
                   help="write a self-contained HTML report (charts, counts, failed, "
                        "unknown and invalid numbers); owner-only, it holds phone numbers")
    p.add_argument("--format", choices=("text", "jsonl"), default="text",
                   help="'jsonl': one JSON object per number on stdout (or to --out)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="with --format jsonl: write to this file (owner-only) instead of stdout")
    p.add_argument("--quota", type=_positive_float, default=None, metavar="N",
                   help="calls per minute drawn on the HTML chart (default: the quota the "
                        "campaign last ran with, as its journal recorded it)")
    _json_option(p, "the summary")

    p = sub.add_parser("sandbox", help="run the fake RyzeAPI server on 127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument("--rate-limit", type=_positive_int, default=100,
                   help="calls the sandbox allows per period (default 100)")
    p.add_argument("--rate-period", type=_positive_float, default=60.0,
                   help="the sandbox's quota period in seconds (default 60)")
    p.add_argument("--window", choices=("fixed", "sliding"), default="fixed",
                   help="the quota's window: fixed periods from the start (default), or "
                        "sliding (any span of --rate-period seconds)")
    p.add_argument("--record", type=Path, metavar="FILE",
                   help="append each request the sandbox answers to FILE as a JSON line "
                        "(time, number, instance, status, route; never the token), flushed "
                        "as it arrives: check a run against what the server saw")
    # The sandbox's own token, printed on purpose: not a secret, so not a Secret.
    p.add_argument("--token", default="sandbox-token", help="the token the sandbox accepts")
    p.add_argument("--instance", default="sandbox", help="the instance it serves")

    p = sub.add_parser("demo", help="a real campaign against an in-process sandbox")
    p.add_argument("--numbers", type=_positive_int, default=300, help="numbers to call")
    p.add_argument("--rate-limit", type=_positive_int, default=20,
                   help="the demo's quota, sped up: calls per period (default 20)")
    p.add_argument("--rate-period", type=_positive_float, default=1.0,
                   help="the demo's quota period in seconds (default 1)")
    p.add_argument("--dir", type=Path, help="keep the demo's files (CSV, audio, journal) here")
    _json_option(p, "the summary, last,")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ryze-async", description="RyzeAPI WhatsApp voice calls: single calls and "
        "crash-safe campaigns that never call anyone twice.", epilog=_EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log more, down to one line per request; tracebacks of bugs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _calls(sub)
    _campaign(sub)
    _tools(sub)
    return parser


def reveal(token: Secret | None) -> str | None:
    """The token's text for ``RyzeClient``, at the last moment (None: ``RYZE_TOKEN``)."""
    return token.reveal() if token is not None and token.given else None


def load_media(path: Path | None, url: str | None, b64: str | None = None) -> Media | None:
    """The media the options name, or None; a refusal names the option."""
    from ryze_async import InvalidRequestError, Media  # noqa: PLC0415 - --help loads no media

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
