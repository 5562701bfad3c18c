"""The PostgreSQL journal's statements for held rows (numbers outside their calling window;
see ``_postgres.py``), and the migration that added them to databases made before.

A held row is ``pending`` with ``not_before`` (when its window opens; ``infinity``: none ever
does under the stored rules) and nobody's claim. ``CLAIM`` (``_postgres_sql.py``) skips held
rows; ``CLAIM_DUE`` claims them once their time has come on the worker's rules' clock.
"""

# Statements are assembled from this module's own constants only, never from input.
# ruff: noqa: S608

from __future__ import annotations

from . import _LEASE, _SWEEPING

__all__ = ["CLAIM_DUE", "HELD_COUNTS", "HOLD", "HOLD_RULES", "MIGRATE", "NEXT_DUE"]

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
