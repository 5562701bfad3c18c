"""A support bot's call button on a token a campaign also uses: answer the user now, call later.

POST /call?number=5511999999999 answers at once, never after a wait on the quota:

- ``{"status": "calling"}``: the quota had a slot within ``MAX_WAIT`` seconds and RyzeAPI
  accepted the call: the phone is ringing.
- ``{"status": "scheduled", "in_seconds": N}``: the token is busy (a campaign, other users);
  ``QuotaTimeoutError`` said so at once, nothing was sent, and the bot calls back in about
  N seconds, in the interactive lane, ahead of any bulk traffic.
- ``{"status": "unknown"}``: the call may have been placed (``OutcomeUnknownError``): the bot
  does not call again; a person checks.
- ``{"status": "failed"}``: RyzeAPI refused the call (a bad number, an instance offline).

Run it (``RYZE_TOKEN`` and ``RYZE_INSTANCE`` set): ``python examples/bot.py``, then
``curl -X POST 'localhost:8080/call?number=5511999999999'``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import AsyncIterator

from aiohttp import web

from ryze_async import (
    InvalidRequestError,
    OutcomeUnknownError,
    QuotaTimeoutError,
    RyzeClient,
    RyzeError,
)

#: The longest a user's request waits for a quota slot before the bot answers "later".
MAX_WAIT = 2.0
#: Bound of the request itself: sending and RyzeAPI's answer.
CALL_TIMEOUT = 20.0

CLIENT = web.AppKey("client", RyzeClient)
LATER = web.AppKey("later", set)  # call-backs in flight: awaited or cancelled at shutdown

log = logging.getLogger("bot")


async def call_now(request: web.Request) -> web.Response:
    number = request.query.get("number", "")
    client = request.app[CLIENT]
    try:
        result = await client.fake_call(number, max_wait=MAX_WAIT, timeout=CALL_TIMEOUT)
    except QuotaTimeoutError as busy:
        # Nothing was sent. available_in is the earliest the quota could admit the call.
        delay = busy.available_in if busy.available_in is not None else MAX_WAIT
        later = asyncio.create_task(call_later(client, number, delay))
        request.app[LATER].add(later)
        later.add_done_callback(request.app[LATER].discard)
        return web.json_response({"status": "scheduled", "in_seconds": math.ceil(delay),
                                  "message": f"busy, will call you in {math.ceil(delay)} s"})
    except InvalidRequestError as bad:
        return web.json_response({"status": "failed", "message": bad.message}, status=400)
    except OutcomeUnknownError as unknown:
        log.warning("call may have been placed (sent at %s): %s", unknown.sent_at, unknown)
        return web.json_response({"status": "unknown",
                                  "message": "we may be calling you; we will not call twice"})
    except RyzeError as refused:
        return web.json_response({"status": "failed", "message": str(refused)}, status=502)
    return web.json_response({"status": "calling", "message": "calling you now",
                              "call_id": result.call_id})


async def call_later(client: RyzeClient, number: str, delay: float) -> None:
    """The promised call: waits its turn in the interactive lane, sent once at most."""
    await asyncio.sleep(delay)
    try:
        await client.fake_call(number, timeout=CALL_TIMEOUT)
    except RyzeError as exc:
        log.warning("the promised call to a user failed: %s", type(exc).__name__)


def make_app(client: RyzeClient) -> web.Application:
    """The bot's web app on ``client`` (interactive lane: the default)."""
    app = web.Application()
    app[CLIENT] = client
    app[LATER] = set()
    app.router.add_post("/call", call_now)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        # ``async with`` when the app starts: the client was built before the event loop ran,
        # so this is what puts its interactive reserve in force for every process on the
        # token (with RYZE_QUOTA_URL) before the first user calls, not at that user's call.
        async with client:
            yield
            for task in list(app[LATER]):
                task.cancel()
            await asyncio.gather(*app[LATER], return_exceptions=True)

    app.cleanup_ctx.append(lifetime)
    return app


def main() -> None:
    # RYZE_QUOTA_URL (a Redis) shares the token's quota with the campaigns of other processes
    # and hosts: the reserve keeps BOT_RESERVE slots of every window free of their bulk calls
    # (a campaign needs no setting of its own; the largest reserve announced wins).
    client = RyzeClient(interactive_reserve=int(os.environ.get("BOT_RESERVE", "10")))
    web.run_app(make_app(client), port=int(os.environ.get("PORT", "8080")))


if __name__ == "__main__":
    main()
