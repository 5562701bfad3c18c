"""The ``campaign`` command (also run by ``demo``): signals, progress, summary, exit code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from ryze_async import InvalidRequestError, Media, RyzeClient

from ._campaign import Campaign
from ._campaign._journal import JournalError
from ._campaign._models import CampaignSummary
from ._cli_progress import format_summary, show_progress

__all__ = [
    "EXIT_BREAKER",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "CampaignJob",
    "UsageError",
    "cli_words",
    "exit_code",
    "print_json",
    "run_campaign_job",
]

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_BREAKER, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_log = logging.getLogger("ryze_async.cli")


class UsageError(Exception):
    """Bad arguments or configuration: exit code 2, message printed, no traceback."""


# The library names its keywords; on the command line the same setting is an option.
_CLI_WORDS = (("instance= (to the client or the call)", "--instance"), ("token=", "--token"),
              ("instance=", "--instance"), ("base_url", "--base-url"),
              ("rate_limit", "--rate-limit"), ("rate_period", "--rate-period"))


def cli_words(message: str) -> str:
    """A configuration error message as the command line's user knows the settings."""
    for library, option in _CLI_WORDS:
        message = message.replace(library, option)
    return message


@dataclass
class CampaignJob:
    """Everything ``campaign`` needs, already parsed (``demo`` builds one too)."""

    numbers: Path
    journal: Path
    media: Media | None
    fake: bool = False
    duration: int | None = None
    token: str | None = field(default=None, repr=False)  # never in a repr or a log
    instance: str | None = None
    base_url: str | None = None
    rate_limit: int = 100
    rate_period: float = 60.0
    concurrency: int = 10
    retry_unknown: bool = False
    retry_failed: bool = False
    force: bool = False
    drain_timeout: float = 30.0
    tty: bool = False
    log_interval: float = 10.0
    column: str | int | None = None
    default_region: str | None = None
    number_check: Literal["valid", "possible"] = "valid"


def exit_code(summary: CampaignSummary) -> int:
    """0 all done and placed; 1 some failed/unknown/left pending, or no entry could be called
    (all invalid); 3 breaker; 130 interrupted. (2: usage or input refused before any call.)"""
    if summary.stop_reason == "circuit_breaker":
        return EXIT_BREAKER
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


def _instance(job: CampaignJob) -> str:
    instance = job.instance or os.environ.get("RYZE_INSTANCE", "").strip()
    if not instance:
        raise UsageError("no instance: pass --instance or set RYZE_INSTANCE")
    return instance


async def run_campaign_job(job: CampaignJob, out: TextIO) -> CampaignSummary:
    """Run one campaign with progress and signal handling; print and return its summary."""
    if not job.numbers.is_file():
        raise UsageError(f"no such numbers file: {job.numbers}")
    instance = _instance(job)
    try:
        client = RyzeClient(job.token, instance, base_url=job.base_url,
                            rate_limit=job.rate_limit, rate_period=job.rate_period,
                            default_region=job.default_region, number_check=job.number_check)
    except InvalidRequestError as exc:
        raise UsageError(cli_words(str(exc))) from None
    async with client:
        campaign = Campaign(
            client, job.numbers, journal=job.journal, media=job.media, fake=job.fake,
            duration=job.duration, instance=instance, concurrency=job.concurrency,
            retry_failed=job.retry_failed, retry_unknown=job.retry_unknown, force=job.force,
            drain_timeout=job.drain_timeout, column=job.column,
        )
        what = "fake calls" if job.media is None else _describe(job.media)
        print(f"campaign: {job.numbers} -> journal {job.journal} ({what}, instance "
              f"{instance!r}, {job.rate_limit} calls per {job.rate_period:g}s, concurrency "
              f"{job.concurrency})", file=out, flush=True)
        summary = await _run_with_signals(campaign, job, out)
    print(format_summary(summary, str(job.journal)), file=out, flush=True)
    return summary


def print_json(summary: CampaignSummary, journal: Path, out: TextIO) -> None:
    """The ``--json`` line: the summary plus the journal path, one JSON object."""
    data = summary.as_dict()
    data["journal"] = str(journal)
    print(json.dumps(data, sort_keys=True), file=out, flush=True)


async def _run_with_signals(campaign: Campaign, job: CampaignJob, out: TextIO) -> (
    CampaignSummary
):
    loop = asyncio.get_running_loop()
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

    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig.value)
            installed.append(sig)
    progress = asyncio.create_task(show_progress(
        campaign.snapshot, lambda: campaign.live.done_this_run, tty=job.tty, out=out,
        interval=job.log_interval, waiting=lambda: campaign.waiting_for_quota,
    ))
    try:
        try:
            return await campaign.run()
        except JournalError as exc:
            raise UsageError(str(exc)) from None
        except (ValueError, OSError) as exc:
            # A numbers file that is not a list of numbers (InputError, raised before the
            # journal exists), media refused: the input's fault, not ours.
            raise UsageError(str(exc)) from None
    finally:
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
        for sig in installed:
            loop.remove_signal_handler(sig)
