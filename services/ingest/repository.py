"""SQL of the ingest tables. Set-based: a batch is a few statements over `unnest(...)` arrays (one
bind parameter per column, so no parameter limit however long the batch), never a loop of INSERTs.
Every statement is scoped by workspace_id, except the outbox publisher's claim, which serves them all.

A batch reads only the rows of the shoppers it names, however large the workspace: each statement
reaches a table through its key (`id = ANY(...)`, a LIMIT-ed LATERAL probe or a scalar subquery).
`workspace_id = $1` alone is no guide for the planner: in a prepared (generic) plan it guesses a
workspace is 0.5% of the table, and it then joined the batch to the whole workspace's rows.
tests/ingest/test_batch_reads.py holds every statement of a batch to that."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.identity import Key, Plan
from shared.db import driver_connection


@dataclass
class NewEvent:
    id: uuid.UUID
    profile_id: uuid.UUID
    message_id: str
    type: str
    name: str | None
    properties: dict[str, Any]
    context: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True)
class KnownIdentity:
    kind: str
    value: str
    profile_id: uuid.UUID
    user_id: str | None


def _json(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


# -- plans ---------------------------------------------------------------------------------------


async def use_generic_plans(session: AsyncSession) -> None:
    """For the rest of the transaction, run prepared statements on their one cached plan. Postgres
    otherwise re-plans these long statements on every call (a custom plan for each batch's values):
    over a quarter of its CPU per batch went to the planner. The statements are written to need no
    values to plan well (they reach rows by key), and tests/ingest/test_batch_reads.py holds them to
    it under this same setting."""
    connection = await driver_connection(session)
    await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")


# -- dedupe --------------------------------------------------------------------------------------

_CLAIM_MESSAGE_IDS = """
    INSERT INTO ingest.received_messages (workspace_id, message_id, event_id, received_at)
    SELECT $1::uuid, m.message_id, m.event_id, $2::timestamptz
    FROM unnest($3::text[], $4::uuid[]) AS m(message_id, event_id)
    ORDER BY m.message_id  -- one lock order for every request: concurrent retries cannot deadlock
    ON CONFLICT (workspace_id, message_id) DO NOTHING
    RETURNING message_id
"""


async def claim_message_ids(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    message_ids: Sequence[tuple[str, uuid.UUID]],
    received_at: datetime,
) -> set[str]:
    """Record (message_id, event_id) pairs; returns the message ids not seen before."""
    if not message_ids:
        return set()
    connection = await driver_connection(session)
    rows = await connection.fetch(
        _CLAIM_MESSAGE_IDS,
        workspace_id,
        received_at,
        [m for m, _ in message_ids],
        [e for _, e in message_ids],
    )
    return {row[0] for row in rows}


# -- identities and profiles ---------------------------------------------------------------------

# Postgres has room for a few thousand locks across all sessions; a 500 KB batch of tiny messages
# can name 10,000+ ids, so beyond MAX_ID_LOCKS ids are locked by bucket (coarser, never a 500).
MAX_ID_LOCKS = 1000
_LOCK_KEYS = """
    SELECT count(pg_advisory_xact_lock(k.h))
    FROM (
        SELECT DISTINCT CASE WHEN $2::int > 0 THEN hashtextextended(x, 0) % $2::int
                             ELSE hashtextextended(x, 0) END AS h
        FROM unnest($1::text[]) AS x ORDER BY 1
    ) AS k
"""

# Each id is a primary-key probe. The LIMITs keep the subqueries apart from the outer query, so
# the planner cannot turn them into a join that reads the whole workspace (it did while the tables
# grew faster than their statistics: every batch read all the workspace's identities and profiles).
_FIND_IDENTITIES = """
    SELECT k.kind, k.value, i.profile_id, p.user_id
    FROM unnest($2::text[], $3::text[]) AS k(kind, value)
    CROSS JOIN LATERAL (
        SELECT profile_id FROM ingest.identities
        WHERE workspace_id = $1::uuid AND kind = k.kind AND value = k.value
        LIMIT 1
    ) AS i
    CROSS JOIN LATERAL (
        SELECT user_id FROM ingest.profiles WHERE id = i.profile_id AND workspace_id = $1::uuid LIMIT 1
    ) AS p
"""


async def lock_identities(session: AsyncSession, workspace_id: uuid.UUID, keys: Sequence[Key]) -> None:
    """Serialise concurrent requests that touch the same ids (until commit), in a fixed order."""
    if keys:
        buckets = MAX_ID_LOCKS if len(keys) > MAX_ID_LOCKS else 0
        connection = await driver_connection(session)
        await connection.execute(
            _LOCK_KEYS, [f"{workspace_id}/{kind}/{value}" for kind, value in keys], buckets
        )


async def find_identities(
    session: AsyncSession, workspace_id: uuid.UUID, keys: Sequence[Key]
) -> list[KnownIdentity]:
    if not keys:
        return []
    connection = await driver_connection(session)
    rows = await connection.fetch(_FIND_IDENTITIES, workspace_id, [k for k, _ in keys], [v for _, v in keys])
    return [KnownIdentity(*row) for row in rows]


# New profiles, their new identities, and user ids given to known anonymous profiles: one statement,
# each list one JSON text ($3..$5). The identities' foreign key is checked at the end of the
# statement, when the new profiles are in.
_WRITE_IDENTITIES = """
    WITH new_profiles AS (
        INSERT INTO ingest.profiles (id, workspace_id, user_id, created_at, updated_at)
        SELECT p.id, $1::uuid, p.user_id, $2::timestamptz, $2::timestamptz
        FROM json_to_recordset($3::json) AS p(id uuid, user_id text)
        RETURNING 1
    ), new_identities AS (
        INSERT INTO ingest.identities (workspace_id, kind, value, profile_id)
        SELECT $1::uuid, i.kind, i.value, i.profile_id
        FROM json_to_recordset($4::json) AS i(kind text, value text, profile_id uuid)
        ON CONFLICT (workspace_id, kind, value) DO NOTHING
        RETURNING 1
    ), named AS (
        UPDATE ingest.profiles AS p SET user_id = u.user_id, updated_at = $2::timestamptz
        FROM json_to_recordset($5::json) AS u(id uuid, user_id text)
        WHERE p.workspace_id = $1::uuid AND p.id = u.id AND p.user_id IS NULL
          AND p.id = ANY(ARRAY(SELECT (json_array_elements($5::json) ->> 'id')::uuid))
        RETURNING 1
    )
    SELECT 1
"""


def json_text(rows: Sequence[Any]) -> str:
    """Rows (dicts or dataclasses) as one JSON text for `json_to_recordset`. `default=str` writes
    Decimals and the uuids asyncpg reads back (its own type, which orjson does not know)."""
    return orjson.dumps(rows, default=str).decode()


async def _write_identities(
    session: AsyncSession, workspace_id: uuid.UUID, plan: Plan, now: datetime
) -> None:
    connection = await driver_connection(session)
    await connection.execute(
        _WRITE_IDENTITIES,
        workspace_id,
        now,
        json_text([{"id": p, "user_id": u} for p, u in plan.new_profiles.items()]),
        json_text([{"kind": k, "value": v, "profile_id": p} for (k, v), p in plan.new_identities.items()]),
        json_text([{"id": p, "user_id": u} for p, u in plan.user_ids.items()]),
    )


# A merge moves the source profile's identities, events, unpublished outbox rows and traits to the
# target (the target's traits win), then deletes the source. Several sources merging into one target
# in the same batch is rare; the traits of only one of them are carried over then.
_MOVE_ROWS = """
    UPDATE ingest.{table} AS t SET profile_id = m.target
    FROM unnest(CAST(:sources AS uuid[]), CAST(:targets AS uuid[])) AS m(source, target)
    WHERE t.workspace_id = :workspace_id AND t.profile_id = m.source
      AND t.profile_id = ANY(CAST(:sources AS uuid[]))
"""
# The outbox has no index on profile_id (one more index on every event's row); its rows of the
# sources are found through the sources' events, by key, before those move. It is small while
# Redis is up, and can hold millions after an outage: never scanned for a merge.
_MOVE_OUTBOX = text(
    _MOVE_ROWS.format(table="event_outbox")  # noqa: S608 - a constant table name
    + """
      AND t.event_id = ANY(ARRAY(
          SELECT e.id FROM ingest.events AS e
          WHERE e.workspace_id = :workspace_id AND e.profile_id = ANY(CAST(:sources AS uuid[]))))
"""
)
_MERGE_STATEMENTS = [
    text(_MOVE_ROWS.format(table="identities")),
    _MOVE_OUTBOX,
    text(_MOVE_ROWS.format(table="events")),
    text("""
        UPDATE ingest.profiles AS t SET traits = s.traits || t.traits, updated_at = :now
        FROM unnest(CAST(:sources AS uuid[]), CAST(:targets AS uuid[])) AS m(source, target)
        JOIN ingest.profiles AS s ON s.id = m.source AND s.workspace_id = :workspace_id
        WHERE t.workspace_id = :workspace_id AND t.id = m.target AND t.id = ANY(CAST(:targets AS uuid[]))
    """),
    # the merged profile keeps the latest word on each consent topic of either profile
    text("""
        INSERT INTO ingest.consents AS c (profile_id, topic, workspace_id, granted, given_at, updated_at)
        SELECT DISTINCT ON (m.target, s.topic) m.target, s.topic, s.workspace_id, s.granted, s.given_at, :now
        FROM unnest(CAST(:sources AS uuid[]), CAST(:targets AS uuid[])) AS m(source, target)
        JOIN ingest.consents AS s ON s.profile_id = m.source AND s.workspace_id = :workspace_id
        ORDER BY m.target, s.topic, s.given_at DESC
        ON CONFLICT (profile_id, topic) DO UPDATE
        SET granted = excluded.granted, given_at = excluded.given_at, updated_at = excluded.updated_at
        WHERE excluded.given_at >= c.given_at
    """),
    text("""
        DELETE FROM ingest.profiles AS p
        USING unnest(CAST(:sources AS uuid[])) AS m(source)
        WHERE p.workspace_id = :workspace_id AND p.id = m.source AND p.id = ANY(CAST(:sources AS uuid[]))
    """),
]

# An upsert, so each profile is reached through its key; every profile named exists (found or made
# by this batch), so only the update happens, and only inside the workspace.
_MERGE_TRAITS = text("""
    INSERT INTO ingest.profiles AS p (id, workspace_id, traits, updated_at)
    SELECT t.id, :workspace_id, CAST(t.traits AS jsonb), :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:traits AS text[])) AS t(id, traits)
    ON CONFLICT (id) DO UPDATE SET traits = p.traits || excluded.traits, updated_at = excluded.updated_at
    WHERE p.workspace_id = excluded.workspace_id
""")


async def apply_plan(session: AsyncSession, workspace_id: uuid.UUID, plan: Plan, now: datetime) -> None:
    """Write what identity resolution decided: new profiles and identities, merges, traits."""
    scope: dict[str, Any] = {"workspace_id": workspace_id, "now": now}
    if plan.new_profiles or plan.new_identities or plan.user_ids:
        await _write_identities(session, workspace_id, plan, now)
    if plan.merges:
        merges = {"sources": [s for s, _ in plan.merges], "targets": [t for _, t in plan.merges]}
        for statement in _MERGE_STATEMENTS:
            await session.execute(statement, {**scope, **merges})
    if plan.traits:
        traits = list(plan.traits.items())
        await session.execute(
            _MERGE_TRAITS, {**scope, "ids": [p for p, _ in traits], "traits": [_json(t) for _, t in traits]}
        )


# -- events and outbox ---------------------------------------------------------------------------

# The events come as ONE JSON text ($3, the `NewEvent`s written by orjson in C): Postgres parses it
# in C, where arrays of text would cost asyncpg a check and an encode per element, and a per-event
# orjson call for the properties and the context.
_INSERT_EVENTS = """
    WITH input AS (
        SELECT * FROM json_to_recordset($3::json) AS e(
            id uuid, profile_id uuid, message_id text, type text, name text, properties jsonb,
            context jsonb, occurred_at timestamptz)
    ), events AS (
        INSERT INTO ingest.events
            (id, workspace_id, profile_id, message_id, type, name, properties, context, occurred_at,
             received_at)
        SELECT id, $1::uuid, profile_id, message_id, type, name, properties, context, occurred_at,
               $2::timestamptz
        FROM input
    )
    INSERT INTO ingest.event_outbox (event_id, workspace_id, profile_id, type, name, occurred_at, created_at)
    SELECT id, $1::uuid, profile_id, type, name, occurred_at, $2::timestamptz
    FROM input
"""


async def insert_events(
    session: AsyncSession, workspace_id: uuid.UUID, events: Sequence[NewEvent], received_at: datetime
) -> None:
    """The events and their outbox rows, in one statement (so in the same transaction)."""
    if not events:
        return
    connection = await driver_connection(session)
    await connection.execute(_INSERT_EVENTS, workspace_id, received_at, json_text(events))


# (workspace_id, event_id, profile_id, type, name, occurred_at)
OutboxRow = tuple[uuid.UUID, uuid.UUID, uuid.UUID, str, str | None, datetime]

# Claimed and deleted in one statement: the caller publishes the rows before it commits, so a failed
# publish rolls the delete back and the rows stay. Oldest first, as they were stored.
_TAKE_OUTBOX = """
    WITH taken AS (
        DELETE FROM ingest.event_outbox AS o
        USING (
            SELECT workspace_id, event_id FROM ingest.event_outbox
            ORDER BY created_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        ) AS claimed
        WHERE o.workspace_id = claimed.workspace_id AND o.event_id = claimed.event_id
        RETURNING o.workspace_id, o.event_id, o.profile_id, o.type, o.name, o.occurred_at, o.created_at
    )
    SELECT workspace_id, event_id, profile_id, type, name, occurred_at FROM taken ORDER BY created_at
"""


async def take_outbox(session: AsyncSession, limit: int) -> list[OutboxRow]:
    """The oldest outbox rows of every workspace, deleted in this transaction (so back if it rolls
    back); rows another publisher holds are skipped, so publishers can run side by side."""
    connection = await driver_connection(session)
    return [tuple(row) for row in await connection.fetch(_TAKE_OUTBOX, limit)]
