"""The ``campaign`` command (also run by ``demo``): signals, progress, summary, exit code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, TextIO

from ryze_async import Campaign, CampaignSummary, Media, RyzeClient
from ryze_async._config import Secret

from ._dry_run import print_plan
from ._exits import (
    EXIT_BREAKER,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OUTSIDE_WINDOW,
    EXIT_SOME_FAILED,
    UsageError,
)
from ._metrics import metrics_hooks, serving
from ._parser import load_media, reveal
from ._progress import format_summary, show_progress
from ._recorded import with_recorded
from ._senders import read_senders

__all__ = [
    "CampaignJob",
    "exit_code",
    "print_json",
    "run_campaign_command",
    "run_campaign_job",
]

_log = logging.getLogger("ryze_async.cli")


@dataclass
class CampaignJob:
    """Everything ``campaign`` needs, already parsed (``demo`` builds one too)."""

    numbers: Path
    #: A file, or a ``postgresql://`` URL (then ``campaign`` names the campaign in it).
    journal: Path | str
    media: Media | None
    fake: bool = False
    duration: int | None = None
    #: A ``Secret``: its repr is redacted, so a traceback's locals never show the token.
    token: Secret | None = field(default=None, repr=False)
    instance: str | None = None
    base_url: str | None = None
    #: ``--ca-file`` (None: ``RYZE_CA_FILE``, else the system's roots).
    ca_file: str | None = None
    rate_limit: int = 100
    rate_period: float = 60.0
    concurrency: int = 10
    retry_unknown: bool = False
    retry_failed: bool = False
    force: bool = False
    drain_timeout: float = 30.0
    #: ``--lease``, ``--reconnect-deadline`` (None: the PostgreSQL journal's defaults).
    lease: float | None = None
    reconnect_deadline: float | None = None
    tty: bool = False
    log_interval: float = 10.0
    column: str | int | None = None
    #: None (a flag left out): the journal's recorded one, else the client's default.
    default_region: str | None = None
    number_check: Literal["valid", "possible"] | None = None
    as_json: bool = False
    campaign: str | None = None
    #: ``--senders``: instance -> ``Secret`` token (a pool); empty: one instance.
    senders: dict[str, Secret] = field(default_factory=dict, repr=False)
    #: The ``--senders`` file (recorded by path, so a resume without the flag reads it again).
    senders_file: Path | None = None
    #: The client's rules read from the journal's record (``_recorded.py``).
    inherited: frozenset[str] = frozenset()
    sheet: str | None = None
    timeout: float = 30.0
    max_retries: int = 3
    #: ``--max-unknown-in-a-row``: unknown outcomes in a row that trip the breaker (0: off).
    max_unknown_in_a_row: int = 5
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    #: None (a flag left out): not given, the journal's recorded rule applies.
    call_windows: list[str] | None = None
    timezone: str | None = None
    exit_outside_window: bool = False
    exclude: list[Path] | None = None
    #: ``--change-rules``: rules given differently from the recorded ones replace them.
    change_rules: bool = False
    not_before: datetime | None = None
    not_after: datetime | None = None
    dry_run: bool = False
    #: ``--quota-url``: the Redis every process on the token shares a quota through (None:
    #: ``RYZE_QUOTA_URL``, else this process's own). Not in the repr: it may hold a password.
    quota_url: str | None = field(default=None, repr=False)


def exit_code(summary: CampaignSummary) -> int:
    """0 all done and placed; 1 some failed/unknown/left pending, or no entry could be called
    (all invalid); 3 breaker; 4 stopped outside the calling windows (``--exit-outside-window``);
    130 interrupted. (2: usage or input refused before any call.)"""
    if summary.stop_reason == "circuit_breaker":
        return EXIT_BREAKER
    if summary.stop_reason == "outside_window":
        return EXIT_OUTSIDE_WINDOW
    if summary.stop_reason in ("interrupted", "aborted"):
        return EXIT_INTERRUPTED
    if summary.failed or summary.unknown or summary.pending or not summary.placed:
        return EXIT_SOME_FAILED
    return EXIT_OK


def _describe(media: Media) -> str:
    if media.kind == "url":
        return f"media URL, fingerprint {media.fingerprint[:12]}"
    return (f"{media.format or 'audio'} media, {media.size} bytes, fingerprint "
            f"{media.fingerprint[:12]}")


def _what(job: CampaignJob, instance: str) -> str:
    what = "fake calls" if job.media is None else _describe(job.media)
    quota = f"{job.rate_limit} calls per {job.rate_period:g}s"
    if job.quota_url or os.environ.get("RYZE_QUOTA_URL", "").strip():
        quota += " shared through Redis"
    if job.senders:
        names = ", ".join(repr(name) for name in job.senders)
        return f"{what}, {len(job.senders)} senders: {names}, each {quota}"
    return f"{what}, instance {instance!r}, {quota}"


def _instance(job: CampaignJob) -> str:
    instance = job.instance or os.environ.get("RYZE_INSTANCE", "").strip()
    if not instance:
        raise UsageError("no instance: pass --instance or set RYZE_INSTANCE")
    return instance


def worker_settings(lease: float | None, deadline: float | None) -> tuple[float, float]:
    """``--lease`` and ``--reconnect-deadline`` (None: the defaults), checked by the journal's
    one rule: a bad one is exit 2 before the journal is read."""
    from ryze_async._campaign.journal import postgres  # noqa: PLC0415 - only when it runs

    lease = postgres.DEFAULT_LEASE if lease is None else lease
    deadline = postgres.DEFAULT_RECONNECT_DEADLINE if deadline is None else deadline
    postgres.check_worker_settings(lease=lease, reconnect_deadline=deadline)
    return lease, deadline


def job_from_args(args: argparse.Namespace) -> CampaignJob:
    media = load_media(args.media, args.media_url, args.media_base64)
    if media is None and not args.fake:
        raise UsageError("give --media FILE, --media-url URL, --media-base64 or --fake")
    check_campaign_name(args.journal, args.campaign)
    worker_settings(args.lease, args.reconnect_deadline)
    if args.senders is not None and (args.instance or args.token is not None):
        raise UsageError("--senders names every instance and token: drop --instance/--token")
    senders = read_senders(args.senders) if args.senders is not None else {}
    return CampaignJob(
        numbers=args.numbers, journal=args.journal, media=media, fake=args.fake,
        duration=args.duration, token=args.token, instance=args.instance,
        base_url=args.base_url, ca_file=args.ca_file, rate_limit=args.rate_limit,
        rate_period=args.rate_period, concurrency=args.concurrency,
        retry_unknown=args.retry_unknown,
        retry_failed=args.retry_failed, force=args.force, drain_timeout=args.drain_timeout,
        tty=sys.stdout.isatty(), log_interval=args.log_interval, column=args.column,
        default_region=args.default_region, number_check=args.number_check,
        as_json=args.json, campaign=args.campaign, senders=senders,
        senders_file=args.senders, sheet=args.sheet,
        timeout=args.timeout, max_retries=args.max_retries,
        max_unknown_in_a_row=args.max_unknown_in_a_row,
        metrics_port=args.metrics_port, metrics_host=args.metrics_host,
        call_windows=args.call_window, timezone=args.timezone,
        exit_outside_window=args.exit_outside_window, exclude=args.exclude,
        not_before=args.not_before, not_after=args.not_after, dry_run=args.dry_run,
        quota_url=args.quota_url, change_rules=args.change_rules, lease=args.lease,
        reconnect_deadline=args.reconnect_deadline,
    )


def check_campaign_name(journal: Path | str, campaign: str | None) -> None:
    """``--campaign`` goes with a postgresql:// journal, and only there."""
    if isinstance(journal, str) and not campaign:
        raise UsageError("a postgresql:// journal holds many campaigns: name one with "
                         "--campaign NAME")
    if isinstance(journal, Path) and campaign is not None:
        raise UsageError("--campaign names a campaign in a postgresql:// journal; the journal "
                         f"file {journal} is one campaign: leave --campaign out")


async def run_campaign_command(args: argparse.Namespace, out: TextIO) -> int:
    return await run_campaign_job(job_from_args(args), out)


async def run_campaign_job(
    job: CampaignJob, out: TextIO, epilogue: Callable[[], str] | None = None
) -> int:
    """Run one campaign with progress and signal handling; print its summary (then what
    ``epilogue`` says, then with ``as_json`` the JSON line, last); return the exit code."""
    if not job.numbers.is_file():
        raise UsageError(f"no such numbers file: {job.numbers}")
    job = await with_recorded(job)
    token: Secret | None
    if job.senders:  # the pool's first sender lends the settings every sender's client copies
        instance, token = next(iter(job.senders.items()))
    else:
        instance, token = _instance(job), job.token
    hooks = metrics_hooks(job.metrics_port, instance)
    client = RyzeClient(reveal(token), instance, base_url=job.base_url,
                        rate_limit=job.rate_limit, rate_period=job.rate_period,
                        default_region=job.default_region,
                        number_check=job.number_check or "valid",
                        timeout=job.timeout, max_retries=job.max_retries, hooks=hooks,
                        quota_url=job.quota_url, ssl=job.ca_file)
    async with client:
        campaign = _campaign(job, client, instance)
        if job.dry_run:
            print_plan(await campaign.dry_run(), job, out)
            return EXIT_OK
        if hooks is not None:
            hooks.watch(campaign)
        print(f"campaign: {job.numbers} -> journal {_journal_name(job)} ({_what(job, instance)}, "
              f"concurrency {job.concurrency})", file=out, flush=True)
        with serving(hooks, job.metrics_host, job.metrics_port, out):
            summary = await _run_with_signals(campaign, job, out)
    print(format_summary(summary, _journal_name(job)), file=out, flush=True)
    if epilogue is not None:
        print(epilogue(), file=out, flush=True)
    if job.as_json:
        print_json(summary, _journal_name(job), out, campaign=job.campaign)
    return exit_code(summary)


def _campaign(job: CampaignJob, client: RyzeClient, instance: str) -> Campaign:
    for path in job.exclude or ():
        if not path.is_file():
            raise UsageError(f"no such opt-out file: {path}")
    lease, reconnect_deadline = worker_settings(job.lease, job.reconnect_deadline)
    try:
        return Campaign(
            client, job.numbers, journal=job.journal, media=job.media, fake=job.fake,
            duration=job.duration, instance=instance, concurrency=job.concurrency,
            retry_failed=job.retry_failed, retry_unknown=job.retry_unknown, force=job.force,
            drain_timeout=job.drain_timeout, column=job.column, campaign=job.campaign,
            senders={name: s.reveal() for name, s in job.senders.items()} or None,
            sheet=job.sheet, call_windows=job.call_windows, timezone=job.timezone,
            exclude=job.exclude, not_before=job.not_before, not_after=job.not_after,
            exit_outside_window=job.exit_outside_window,
            max_unknown_in_a_row=job.max_unknown_in_a_row, change_rules=job.change_rules,
            inherited_rules=job.inherited, senders_file=job.senders_file,
            lease=lease, reconnect_deadline=reconnect_deadline,
        )
    except ValueError as exc:  # a window or zone the rules refused
        raise UsageError(str(exc)) from None


def _journal_name(job: CampaignJob) -> str:
    """The journal as it may be shown: a URL never with its password."""
    from ryze_async._campaign.journal import describe  # noqa: PLC0415 - light import

    name = describe(job.journal)
    return f"{name} campaign {job.campaign!r}" if job.campaign else name


def print_json(summary: CampaignSummary, journal: Path | str, out: TextIO, *,
               campaign: str | None = None, extra: dict[str, object] | None = None) -> None:
    """The ``--json`` line: the summary plus the journal (a URL without its password)."""
    from ryze_async._campaign.journal import describe  # noqa: PLC0415 - light import

    data: dict[str, object] = {**summary.as_dict(), **(extra or {})}
    data["journal"] = describe(journal)
    if campaign is not None:
        data["campaign"] = campaign
    print(json.dumps(data, sort_keys=True), file=out, flush=True)


def _signal_handler(campaign: Campaign, job: CampaignJob) -> Callable[[int], None]:
    presses = 0

    def on_signal(signum: int) -> None:
        nonlocal presses
        presses += 1
        name = signal.Signals(signum).name
        if presses == 1:
            s = campaign.snapshot()
            _log.warning("%s: stopping; no new calls; waiting for %d in flight (up to %gs). "
                         "Again to abort at once.", name, s.in_flight, job.drain_timeout)
            campaign.stop()
        else:
            _log.warning("%s again: aborting; calls in flight are recorded unknown", name)
            campaign.abort()

    return on_signal


async def _run_with_signals(campaign: Campaign, job: CampaignJob, out: TextIO) -> (
    CampaignSummary
):
    loop = asyncio.get_running_loop()
    on_signal = _signal_handler(campaign, job)
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig.value)
            installed.append(sig)
    progress = asyncio.create_task(show_progress(
        campaign.snapshot, lambda: campaign.live.done_this_run, tty=job.tty, out=out,
        interval=job.log_interval, waiting=lambda: campaign.waiting_for_quota,
        window=lambda: campaign.waiting_for_window,
    ))
    try:
        # What the run raises goes up to exit_for: InputError and the journal's errors are
        # the user's to fix (exit 2); anything else is a bug and is reported as one.
        return await campaign.run()
    finally:
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
        for sig in installed:
            loop.remove_signal_handler(sig)
