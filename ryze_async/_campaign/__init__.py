"""Campaigns: a streamed list of numbers dialed once each through a journal store.

``engine`` (``Campaign``, ``run_campaign``) opens the journal and runs a ``dispatch``
``Dispatcher`` over it; ``inputs/`` reads the numbers (one reader per format); ``rules/`` holds
the operator's rules and the gate; ``journal/`` is the journal-store seam with its SQLite and
PostgreSQL stores; ``outcomes`` holds what a campaign reports and folds the store's events into
live counts; ``dry_run`` plans a run without calling. See ARCHITECTURE.md, "A campaign
number's path".
"""
from .dispatch import CampaignClient
from .engine import Campaign, run_campaign
from .outcomes import CampaignOutcome, CampaignSummary, StopReason

__all__ = [
    "Campaign",
    "CampaignClient",
    "CampaignOutcome",
    "CampaignSummary",
    "StopReason",
    "run_campaign",
]
