"""The client's instrumentation hooks, told each outcome the campaign records.

The hooks are the client's own (``RyzeClient(hooks=...)``, read back through its public
``hooks``): one list of observers sees both the requests and the campaign's outcomes. A stub
client without ``hooks`` simply has none. Like the client's, a hook that raises is logged and
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .. import CampaignOutcomeRecorded

__all__ = ["OutcomeHook", "outcome_hooks", "tell"]

_log = logging.getLogger("ryze_async.campaign")
OutcomeHook = Callable[[CampaignOutcomeRecorded], object]


def outcome_hooks(client: object) -> tuple[OutcomeHook, ...]:
    """The ``on_campaign_outcome`` methods of the client's hooks, resolved once."""
    found = (getattr(hook, "on_campaign_outcome", None) for hook in getattr(client, "hooks", ()))
    return tuple(method for method in found if callable(method))


def tell(hooks: tuple[OutcomeHook, ...], details: CampaignOutcomeRecorded) -> None:
    for hook in hooks:
        try:
            hook(details)
        except Exception:
            _log.exception("ryze_async hook on_campaign_outcome raised; ignored")
