"""The PostgreSQL journal's schema and statements (see ``store.py`` for the rules).

Every table is keyed by campaign, so several campaigns share one database. Leases compare
``lease_until`` with ``clock_timestamp()``: the database's clock decides, never a worker's, and
``clock_timestamp()`` (not ``now()``, frozen at the start of a transaction) is the time of the
statement itself.

The statements for held rows (numbers outside their calling window), and the migration that
added them to databases made before, are here too.

A held row is ``pending`` with ``not_before`` (when its window opens; ``infinity``: none ever does
under the stored rules) and nobody's claim. ``CLAIM`` skips held rows; ``CLAIM_DUE`` claims them
once their time has come on the worker's rules' clock."""

# Statements are assembled from this module's own constants only, never from input.
# ruff: noqa: S608

from __future__ import annotations

import math
import ssl
from typing import Any

from .... import InvalidRequestError
from ...._urls import scrub, shown_url
from ..schema import SKIP_REASON, JournalError

__all__ = [
    "ADD_ELAPSED", "CAMPAIGN_FOR_UPDATE", "CLAIM", "CLAIM_DUE", "COUNTS", "COUNTS_HEAD",
    "DEFAULT_LEASE", "DEFAULT_RECONNECT_DEADLINE", "HEARTBEAT", "HELD_COUNTS", "HOLD", "HOLD_RULES",
    "INSERT_INVALID", "INSERT_VALID", "KNOWN_KEYS", "LEASE_LOST", "MARK", "MIGRATE",
    "MIGRATE_QUOTA", "NEXT_DUE", "OUTCOME", "RECONCILE", "RECOVER", "RELEASE", "RENUMBER",
    "RESTART_INPUT", "SCHEMA", "SCHEMA_LOCK", "SEE_AGAIN", "SET_POSITION", "STILL_SENDING",
    "SWEEP_CANDIDATES", "SWEEP_REMOVED", "add_column", "check_worker_settings", "connect",
]


#: A claim's lease (seconds after its worker's last heartbeat) and how long a worker tries a lost
#: connection again before it gives up (``--lease``, ``--reconnect-deadline``), unless given.
DEFAULT_LEASE = 30.0
DEFAULT_RECONNECT_DEADLINE = 60.0
#: A lease under a second leaves its heartbeat (a third of it) no room; a day is plenty.
_LIMITS = {"lease": (1.0, 86400.0), "reconnect_deadline": (0.0, 86400.0)}


def check_worker_settings(**settings: object) -> None:
    """The one check of ``lease`` and ``reconnect_deadline`` (seconds): a finite number in
    range, else :class:`InvalidRequestError` before anything is opened."""
    for name, value in settings.items():
        low, high = _LIMITS[name]
        number = not isinstance(value, bool) and isinstance(value, int | float)
        if not (number and math.isfinite(value) and low <= value <= high):  # type: ignore[arg-type, operator]
            raise InvalidRequestError(f"{name} must be a finite number of seconds >= {low:g} "
                                      f"and <= {high:g}, not {value!r}", field=name)

LEASE_LOST = ("lease expired while sending (worker died or stalled): the call may have been "
              "placed")

# A fixed advisory-lock key: concurrent ``CREATE ... IF NOT EXISTS`` from several workers can
# still collide in the catalogs, so schema creation is serialized.
SCHEMA_LOCK = 0x52595A45

SCHEMA = """
CREATE TABLE IF NOT EXISTS ryze_campaigns (
    campaign          text PRIMARY KEY,
    kind              text,
    media             text,
    instance          text,
    ingest_pass       integer NOT NULL DEFAULT 0,
    sweep_due         boolean NOT NULL DEFAULT false,
    ingest_duplicates bigint NOT NULL DEFAULT 0,
    ingest_offset     bigint NOT NULL DEFAULT 0,
    ingest_line       bigint NOT NULL DEFAULT 0,
    ingest_digest     text NOT NULL DEFAULT '',
    elapsed           double precision NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    hold_rules        text,
    quota             text
);
CREATE TABLE IF NOT EXISTS ryze_numbers (
    campaign    text NOT NULL REFERENCES ryze_campaigns ON DELETE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    number      text NOT NULL,
    key         text,
    valid       boolean NOT NULL,
    state       text NOT NULL CHECK (state IN
                ('pending','claimed','sending','placed','failed','unknown','skipped')),
    line        bigint,
    call_id     text,
    http_status integer,
    error       text,
    attempt_at  timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    seen        integer NOT NULL DEFAULT 0,
    owner       text,
    lease_until timestamptz,
    sender      text,
    not_before  timestamptz,
    PRIMARY KEY (campaign, id),
    UNIQUE (campaign, key)
);
CREATE INDEX IF NOT EXISTS ryze_numbers_leased ON ryze_numbers (campaign, lease_until)
    WHERE state IN ('claimed', 'sending');
CREATE TABLE IF NOT EXISTS ryze_elapsed (
    campaign    text NOT NULL REFERENCES ryze_campaigns ON DELETE CASCADE,
    run         text NOT NULL,
    PRIMARY KEY (campaign, run)
);
"""

# A run's duration is added once: the run's id goes in with it, so the statement tried again
# after its commit's answer was lost adds nothing ($3: the worker and its run).
ADD_ELAPSED = """
WITH run AS (INSERT INTO ryze_elapsed (campaign, run) VALUES ($1, $3) ON CONFLICT DO NOTHING
             RETURNING 1)
UPDATE ryze_campaigns SET elapsed = elapsed + $2
WHERE campaign = $1 AND EXISTS (SELECT 1 FROM run)
"""

_LEASE = "clock_timestamp() + $3::float8 * interval '1 second'"
_SWEEPING = "(SELECT sweep_due FROM ryze_campaigns WHERE campaign = $1)"

CAMPAIGN_FOR_UPDATE = "SELECT * FROM ryze_campaigns WHERE campaign = $1 FOR UPDATE"

# $1 campaign, $2 worker, $3 lease seconds, $4 limit. SKIP LOCKED: concurrent claimers never
# wait for each other's rows and never get the same row; nothing is claimed while a pass over
# a changed input is open (a pending row may be one the user removed).
# The CTE is MATERIALIZED so it runs once: as a subquery the planner may rescan it for each
# row of the join, and every rescan skips the rows this statement just locked and takes new
# ones (a claim of 1 took 5 here).
CLAIM = f"""
WITH c AS MATERIALIZED (
    SELECT id FROM ryze_numbers WHERE campaign = $1 AND state = 'pending' AND valid
    AND not_before IS NULL AND NOT {_SWEEPING} ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
UPDATE ryze_numbers AS n SET state = 'claimed', owner = $2, lease_until = {_LEASE}
FROM c WHERE n.campaign = $1 AND n.id = c.id
RETURNING n.id, n.number, n.line
"""

# $4 ids, $5 senders. ``id = ANY($4)`` beside the join keeps the plan on the primary key:
# joined to ``unnest`` alone, the planner chose a scan of the whole table (of every campaign)
# per commit, and throughput fell as the table grew. A row moves to ``sending`` only if this
# worker still holds its claim (lease not expired on the database's clock) or nobody holds it
# (pending).
MARK = f"""
UPDATE ryze_numbers AS n SET state = 'sending', owner = $2, lease_until = {_LEASE},
    attempt_at = clock_timestamp(), attempts = n.attempts + 1, call_id = NULL,
    http_status = NULL, error = NULL, sender = m.sender
FROM unnest($4::bigint[], $5::text[]) AS m(id, sender)
WHERE n.campaign = $1 AND n.id = ANY($4::bigint[]) AND n.id = m.id AND n.valid
  AND NOT {_SWEEPING}
  AND (n.state = 'pending'
       OR (n.state = 'claimed' AND n.owner = $2 AND n.lease_until > clock_timestamp()))
RETURNING n.id
"""

# $1 campaign, $2 worker, $3 id, $4 state, $5 call_id, $6 status, $7 error, $8 sender.
# A late answer to a call whose lease ran out (unknown, still this worker's) is written only if
# it comes from the server (placed or failed): it is exact. ``pending`` releases the row.
OUTCOME = f"""
UPDATE ryze_numbers SET state = $4, call_id = $5, http_status = $6, error = $7,
    sender = COALESCE($8, sender), lease_until = NULL,
    owner = CASE WHEN $4 = 'pending' THEN NULL ELSE owner END
WHERE campaign = $1 AND id = $3 AND (
    state = 'pending'
    OR (state IN ('claimed', 'sending') AND owner = $2)
    OR (state = 'unknown' AND owner = $2 AND error = '{LEASE_LOST}'
        AND $4 IN ('placed', 'failed')))
"""

# Neither the heartbeat nor the recovery ever waits for a row lock (SKIP LOCKED, and rows
# locked in id order): a row busy in another transaction is left for the next round, and no
# lock cycle (deadlock) can run through them. A busy row's owner is alive and acting on it.
HEARTBEAT = f"""
WITH mine AS MATERIALIZED (
    SELECT id FROM ryze_numbers WHERE campaign = $1 AND owner = $2
    AND state IN ('claimed', 'sending') AND lease_until > clock_timestamp()
    ORDER BY id FOR UPDATE SKIP LOCKED)
UPDATE ryze_numbers AS n SET lease_until = {_LEASE}
FROM mine WHERE n.campaign = $1 AND n.id = mine.id
"""

# Expired leases: a claim never sent goes back to pending; a row that may have been sent
# becomes unknown and is never redialed automatically. The owner stays on an unknown row (a
# late answer from that worker may still be written, see OUTCOME).
RECOVER = f"""
WITH due AS MATERIALIZED (
    SELECT id, state FROM ryze_numbers WHERE campaign = $1
    AND state IN ('claimed', 'sending') AND lease_until <= clock_timestamp()
    ORDER BY id FOR UPDATE SKIP LOCKED),
released AS (
    UPDATE ryze_numbers AS n SET state = 'pending', owner = NULL, lease_until = NULL
    FROM due WHERE n.campaign = $1 AND n.id = due.id AND due.state = 'claimed'
    RETURNING 1),
lost AS (
    UPDATE ryze_numbers AS n SET state = 'unknown', error = '{LEASE_LOST}', lease_until = NULL
    FROM due WHERE n.campaign = $1 AND n.id = due.id AND due.state = 'sending'
    RETURNING 1)
SELECT (SELECT count(*) FROM released) AS released, (SELECT count(*) FROM lost) AS lost
"""

# After a reconnect ($3: the claims this worker knows it holds): a claim it never learned of (the
# claim committed as the connection died) and a claim whose lease ran out meanwhile go back to
# pending. Neither was sent: a mark only ever follows a claim the worker received, live.
RECONCILE = """
WITH strays AS (
    UPDATE ryze_numbers SET state = 'pending', owner = NULL, lease_until = NULL
    WHERE campaign = $1 AND owner = $2 AND state = 'claimed'
    AND (NOT id = ANY($3::bigint[]) OR lease_until <= clock_timestamp())
    RETURNING id = ANY($3::bigint[]) AS known)
SELECT count(*) FILTER (WHERE NOT known) AS strays, count(*) FILTER (WHERE known) AS expired
FROM strays
"""

# After a reconnect: which of a retried commit's refused marks the lost commit made ($3 ids).
STILL_SENDING = """
SELECT id FROM ryze_numbers WHERE campaign = $1 AND owner = $2 AND id = ANY($3::bigint[])
AND state = 'sending' AND lease_until > clock_timestamp()
"""

# At close: claims go back; a row still sending (cancelled mid-call) may have been placed.
RELEASE = """
WITH released AS (
    UPDATE ryze_numbers SET state = 'pending', owner = NULL, lease_until = NULL
    WHERE campaign = $1 AND owner = $2 AND state = 'claimed' RETURNING 1),
lost AS (
    UPDATE ryze_numbers SET state = 'unknown', error = $3, lease_until = NULL
    WHERE campaign = $1 AND owner = $2 AND state = 'sending' RETURNING 1)
SELECT (SELECT count(*) FROM released), (SELECT count(*) FROM lost)
"""

COUNTS = f"""
SELECT valid, {SKIP_REASON} AS state, count(*) AS n FROM ryze_numbers WHERE campaign = $1
GROUP BY 1, 2
"""



def add_column(table: str, column: str, kind: str) -> str:
    """SQL adding a column to a table of a database made by an older release. The column is
    looked up first: ``ADD COLUMN IF NOT EXISTS`` takes the table's exclusive lock even when the
    column is there, and every open would then wait for (and could deadlock with) another
    worker's ingest. Names are the journal's own constants, never input."""
    return f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{table}'::regclass
                   AND attname = '{column}' AND NOT attisdropped) THEN
        ALTER TABLE {table} ADD COLUMN {column} {kind};
    END IF;
END $$;
"""


# Databases made before #15 recorded no quota (``report --html`` draws the campaign's own).
MIGRATE_QUOTA = add_column("ryze_campaigns", "quota", "text")

# Workers: distinct owners holding a live lease now.
COUNTS_HEAD = """
SELECT ingest_duplicates, elapsed, (SELECT count(DISTINCT owner) FROM ryze_numbers
    WHERE campaign = $1 AND state IN ('claimed', 'sending')
    AND lease_until > clock_timestamp()) AS workers
FROM ryze_campaigns WHERE campaign = $1
"""

KNOWN_KEYS = """
SELECT key, state, seen FROM ryze_numbers WHERE campaign = $1 AND key = ANY($2::text[])
"""

# Input order is id order: ORDINALITY keeps the batch's order through the insert.
INSERT_VALID = """
INSERT INTO ryze_numbers (campaign, number, key, valid, state, line, seen)
SELECT $1, t.n, t.k, true, 'pending', t.l, $5
FROM unnest($2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS t(n, k, l, o)
ORDER BY t.o
ON CONFLICT (campaign, key) DO NOTHING
RETURNING key
"""

INSERT_INVALID = """
INSERT INTO ryze_numbers (campaign, number, key, valid, state, line, error, seen)
SELECT $1, t.n, NULL, false, 'failed', t.l, t.e, $5
FROM unnest($2::text[], $3::bigint[], $4::text[]) WITH ORDINALITY AS t(n, l, e, o)
ORDER BY t.o
"""

# Seen again in a new pass: the rows ``Batch.decide`` restored ($5) go back to pending.
# $2 key. A restored row takes the next id, as a new row would (``_insert_in_order``).
RENUMBER = """
UPDATE ryze_numbers SET id = DEFAULT WHERE campaign = $1 AND key = $2
"""

SEE_AGAIN = """
UPDATE ryze_numbers AS r SET seen = $4, line = u.l,
    state = CASE WHEN u.back THEN 'pending' ELSE r.state END,
    not_before = CASE WHEN u.back THEN NULL ELSE r.not_before END,
    error = CASE WHEN u.back THEN NULL ELSE r.error END
FROM unnest($2::text[], $3::bigint[], $5::boolean[]) AS u(k, l, back)
WHERE r.campaign = $1 AND r.key = ANY($2::text[]) AND r.key = u.k
"""

# The resume point only moves forward: a worker behind another one stores nothing older.
SET_POSITION = """
UPDATE ryze_campaigns SET ingest_duplicates = ingest_duplicates + $2,
    ingest_offset = CASE WHEN $4 > ingest_line THEN $3 ELSE ingest_offset END,
    ingest_digest = CASE WHEN $4 > ingest_line THEN $5 ELSE ingest_digest END,
    ingest_line = GREATEST(ingest_line, $4)
WHERE campaign = $1
"""

RESTART_INPUT = """
UPDATE ryze_campaigns SET ingest_pass = ingest_pass + 1, sweep_due = true,
    ingest_duplicates = 0, ingest_offset = 0, ingest_line = 0, ingest_digest = ''
WHERE campaign = $1
"""

# The ids ``swept`` chose among these (``postgres/store.py``, ``finish_pass``).
SWEEP_CANDIDATES = """
SELECT id, state, seen FROM ryze_numbers
WHERE campaign = $1 AND valid AND state IN ('pending', 'claimed') FOR UPDATE
"""

SWEEP_REMOVED = """
UPDATE ryze_numbers SET state = 'skipped', error = $2, owner = NULL, lease_until = NULL
WHERE campaign = $1 AND id = ANY($3::bigint[])
"""


# Databases made before ``not_before`` (held rows lived in the worker's memory, and claimed):
# the columns are added, and the index of every pending row is replaced by ``ready`` below.
# Looked up first, so an open does not take the table's exclusive lock once migrated.
MIGRATE = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'ryze_numbers'::regclass
                   AND attname = 'not_before' AND NOT attisdropped) THEN
        ALTER TABLE ryze_numbers ADD COLUMN not_before timestamptz;
        ALTER TABLE ryze_campaigns ADD COLUMN IF NOT EXISTS hold_rules text;
        DROP INDEX IF EXISTS ryze_numbers_pending;
    END IF;
END $$;
-- Pending rows not held (claimed in id order), and held ones by when they come due: neither
-- claim walks over the other's rows.
CREATE INDEX IF NOT EXISTS ryze_numbers_ready ON ryze_numbers (campaign, id)
    WHERE state = 'pending' AND valid AND not_before IS NULL;
CREATE INDEX IF NOT EXISTS ryze_numbers_held ON ryze_numbers (campaign, not_before, id)
    WHERE state = 'pending' AND valid AND not_before IS NOT NULL;
"""

# Held rows (outside their calling window) whose time has come, earliest first; $5 is the
# time now on the worker's rules' clock (Unix seconds), which decides the windows.
CLAIM_DUE = f"""
WITH c AS MATERIALIZED (
    SELECT id FROM ryze_numbers WHERE campaign = $1 AND state = 'pending' AND valid
    AND not_before IS NOT NULL AND not_before <= to_timestamp($5::float8) AND NOT {_SWEEPING}
    ORDER BY not_before, id LIMIT $4 FOR UPDATE SKIP LOCKED)
UPDATE ryze_numbers AS n SET state = 'claimed', owner = $2, lease_until = {_LEASE}
FROM c WHERE n.campaign = $1 AND n.id = c.id
RETURNING n.id, n.number, n.line, extract(epoch FROM n.not_before)::float8 AS not_before
"""

# $3 id, $4 until (Unix seconds; 'Infinity': no window opens). A hold gives this worker's
# claim back, so any worker may take the row when its window opens.
HOLD = """
UPDATE ryze_numbers SET state = 'pending', owner = NULL, lease_until = NULL,
    not_before = to_timestamp($4::float8)
WHERE campaign = $1 AND id = $3 AND (state = 'pending' OR (state = 'claimed' AND owner = $2))
"""

_HELD = "campaign = $1 AND state = 'pending' AND valid AND not_before IS NOT NULL"
NEXT_DUE = f"""
SELECT extract(epoch FROM not_before)::float8 FROM ryze_numbers
WHERE {_HELD} AND not_before < 'infinity' ORDER BY not_before LIMIT 1
"""
HELD_COUNTS = f"""
SELECT count(*) FILTER (WHERE not_before < 'infinity'),
       count(*) FILTER (WHERE not_before = 'infinity')
FROM ryze_numbers WHERE {_HELD} AND not_before > to_timestamp($2::float8)
"""
# $2 the rules holds are computed under: other rules than the stored ones forget every hold.
HOLD_RULES = """
WITH changed AS (
    UPDATE ryze_campaigns SET hold_rules = $2
    WHERE campaign = $1 AND hold_rules IS DISTINCT FROM $2 RETURNING 1),
cleared AS (
    UPDATE ryze_numbers SET not_before = NULL
    WHERE campaign = $1 AND state = 'pending' AND not_before IS NOT NULL
    AND EXISTS (SELECT 1 FROM changed) RETURNING 1)
SELECT count(*) FROM cleared
"""


async def connect(dsn: str, name: str = "ryze-async") -> Any:
    """One connection that holds no session state from one transaction to the next.

    Behind a pooler in transaction mode (PgBouncer, the managed ones) each transaction may run
    on another server connection. So the only startup parameter is ``application_name`` (every
    pooler passes it; others are refused at connect, and a managed pooler's
    ``ignore_startup_parameters`` is not the user's to change); durability is set in the
    transaction that needs it (a mark's ``SET LOCAL``, ``store.durability``); and no named
    prepared statement is kept (``statement_cache_size=0``: asyncpg's cached statements would
    be missing, or another client's, on the next transaction's server connection; an unnamed
    one is parsed and run on one server connection, with no Sync in between).
    """
    # Imported here: this module's statements are read without loading the driver.
    import asyncpg  # noqa: PLC0415

    try:
        return await asyncpg.connect(dsn, server_settings={"application_name": name},
                                     statement_cache_size=0)
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message.rstrip(".")
        raise JournalError(
            f"{shown_url(dsn)}: the database server's TLS certificate was refused ({reason}): "
            "check sslrootcert (the CA that signed it) and the host name in the URL "
            "(sslmode=verify-full checks both)") from None
    except asyncpg.ClientConfigurationError as exc:  # e.g. an unknown sslmode
        raise JournalError(f"{shown_url(dsn)}: {scrub(str(exc), dsn)}") from None
    except FileNotFoundError as exc:
        raise JournalError(
            f"{shown_url(dsn)}: {exc.strerror}: a file the URL names (sslrootcert, sslcert, "
            "sslkey) or its Unix socket") from None
