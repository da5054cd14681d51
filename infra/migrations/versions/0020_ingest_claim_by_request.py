"""Ingest: a batch's messageIds are claimed request by request, with a plain insert.

`INSERT ... ON CONFLICT DO NOTHING` inserts speculatively: it searches the key's index for a
conflict, inserts the heap row, then descends the index again to insert the key. A plain insert
descends once (the unique check is part of its descent). Into a table of 1,000,000 random
messageIds, 500 a transaction, backend CPU an id (a scratch microbenchmark, 4 rounds): plain
6.7-9.0 us, ON CONFLICT with RETURNING 10.0-12.6 (BENCHMARKS.md, ingest, session 21).

So each request's messageIds (`messages` is now one array a request, or a few small requests:
services/ingest/repository.py, `claim_parts`) are inserted plainly, in a block of their own. A request
carrying a repeat (an SDK resending a batch whose answer it missed) fails there with a unique
violation; only that block is rolled back, and its messageIds are claimed again with ON CONFLICT, as
before. The other requests of the transaction keep their plain insert.

Each block is a subtransaction; a transaction with more than 64 of them that wrote would make other
sessions' snapshots overflow their cache of subtransactions, so the caller sends at most
`MAX_CLAIM_PARTS` (32) parts.

Each part's messageIds are inserted in key order, as before. Two transactions claiming one messageId
wait on each other's key; both hold the locks of the message's shopper ids first, so a message sent
again with the same ids waits at the locks. The same messageId sent at once with other ids, in
another order among parts, can deadlock: Postgres then fails one transaction, which group commit
stores again request by request (services/ingest/group_commit.py), where its repeat is found.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-25
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What a part claims: its messageIds in the dedupe window's current generation, unless the previous
# one holds them (as 0015's claim, services/ingest/dedupe.py); INTO the repeats (those not claimed).
_CLAIM_PART = """
            WITH generation AS MATERIALIZED (  -- generation 0 if the window's row is missing: never none
                SELECT coalesce(d.generation, 0) AS current,
                       extract(epoch FROM coalesce(d.started_at, 'infinity'))::float8 + probe_margin_s
                           AS new_from
                FROM (SELECT) AS one LEFT JOIN ingest.dedupe_window AS d ON d.one_row
            ), window_now AS (
                SELECT current, (current + generations - 1) % generations AS previous, new_from
                FROM generation
            ), claims AS MATERIALIZED (  -- [[messageId, when it was made or null], ...]
                SELECT c->>0 AS message_id, (c->>1)::float8 AS made_at FROM json_array_elements(part) AS c
            ), claimed AS (
                INSERT INTO ingest.received_messages AS r (workspace_id, message_id, generation)
                SELECT workspace, m.message_id, w.current
                FROM claims AS m
                CROSS JOIN window_now AS w
                -- `OR` tries its arguments in order: the previous generation is searched only for a
                -- message not known to be made after the current one started
                WHERE m.made_at >= w.new_from OR NOT EXISTS (
                    SELECT 1 FROM ingest.received_messages AS p
                    WHERE p.workspace_id = workspace AND p.message_id = m.message_id
                      AND p.generation = w.previous
                    OFFSET 0)  -- a key probe per id: as an anti-join, it read the whole previous generation
                ORDER BY m.message_id
                {on_conflict}RETURNING r.message_id
            )
            SELECT coalesce(array_agg(m.message_id), '{{}}') INTO part_repeats
            FROM claims AS m
            WHERE NOT EXISTS (SELECT 1 FROM claimed AS c WHERE c.message_id = m.message_id COLLATE "C");"""

_PLAIN_CLAIM = _CLAIM_PART.format(on_conflict="")
_CLAIM_SKIPPING_REPEATS = _CLAIM_PART.format(
    on_conflict="ON CONFLICT (workspace_id, message_id, generation) DO NOTHING\n                "
)

LOCK_CLAIM_AND_FIND = f"""
CREATE FUNCTION ingest.lock_claim_and_find(
    workspace uuid, messages json, kinds text[], vals text[],
    generations int, probe_margin_s float8
) RETURNS TABLE (message_id text, kind text, value text, profile_id uuid, user_id text,
                 last_seen_at timestamptz)
LANGUAGE plpgsql VOLATILE
AS $function$
#variable_conflict use_column
DECLARE
    buckets int := CASE WHEN cardinality(kinds) > 1000 THEN 1000 ELSE 0 END;
    part json;
    part_repeats text[];
    repeats text[] := '{{}}';
BEGIN
    -- for the rest of the transaction (a merge's statements after this run on them too)
    PERFORM set_config('plan_cache_mode', 'force_generic_plan', true),
            set_config('enable_seqscan', 'off', true);

    PERFORM count(pg_advisory_xact_lock(k.h))
    FROM (
        SELECT DISTINCT CASE WHEN buckets > 0 THEN hashtextextended(x.key, 0) % buckets
                             ELSE hashtextextended(x.key, 0) END AS h
        FROM (SELECT workspace::text || '/' || k.kind || '/' || k.value AS key
              FROM unnest(kinds, vals) AS k(kind, value)) AS x
        ORDER BY 1
    ) AS k;

    -- `messages`: one array a request (or a few small ones): [[[messageId, made_at], ...], ...]
    FOR part IN SELECT p FROM json_array_elements(messages) AS p LOOP
        BEGIN  -- the common case: no repeat, one descent of the index an id
{_PLAIN_CLAIM}
        EXCEPTION WHEN unique_violation THEN  -- a repeat: this part again, each id searched first
{_CLAIM_SKIPPING_REPEATS}
        END;
        repeats := repeats || part_repeats;
    END LOOP;

    RETURN QUERY
    SELECT r.id, NULL::text, NULL::text, NULL::uuid, NULL::text, NULL::timestamptz
    FROM unnest(repeats) AS r(id)
    UNION ALL
    SELECT NULL, k.kind, k.value, i.profile_id, p.user_id::text, a.last_seen_at
    FROM unnest(kinds, vals) AS k(kind, value)
    CROSS JOIN LATERAL (
        SELECT profile_id FROM ingest.identities
        WHERE workspace_id = workspace AND kind = k.kind AND value = k.value
        LIMIT 1
    ) AS i
    CROSS JOIN LATERAL (
        SELECT user_id FROM ingest.profiles WHERE id = i.profile_id AND workspace_id = workspace LIMIT 1
    ) AS p
    LEFT JOIN LATERAL (
        SELECT last_seen_at FROM ingest.profile_aggregates
        WHERE profile_id = i.profile_id AND workspace_id = workspace
        LIMIT 1
    ) AS a ON true;
END
$function$
"""

_SIGNATURE = "ingest.lock_claim_and_find(uuid, json, text[], text[], int, float8)"


def _lock_claim_and_find_of_0015() -> str:
    path = Path(__file__).with_name("0015_ingest_batch_functions.py")
    spec = importlib.util.spec_from_file_location("migration_0015", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module.LOCK_CLAIM_AND_FIND
    return text


def upgrade() -> None:
    op.execute(f"DROP FUNCTION {_SIGNATURE}")
    op.execute(LOCK_CLAIM_AND_FIND)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {_SIGNATURE}")
    op.execute(_lock_claim_and_find_of_0015())
