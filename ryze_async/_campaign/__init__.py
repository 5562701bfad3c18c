"""Campaigns: a streamed list of numbers dialed once each through a journal store.

``_engine`` (``Campaign``, ``run_campaign``) opens the journal and runs a ``_dispatch``
``Dispatcher`` over it; input sources (``_number_source``, ``_csv_input``) feed ``_ingest``;
``_journal/`` is the journal-store seam and its SQLite store; ``_counts`` folds the store's
events into live counts. See ARCHITECTURE.md, "A campaign number's path".
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
