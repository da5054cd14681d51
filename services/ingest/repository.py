"""SQL of the ingest tables. Set-based: a batch is a few statements over `unnest(...)` arrays (one
bind parameter per column, so no parameter limit however long the batch), never a loop of INSERTs.
Every statement is scoped by workspace_id, except the outbox publisher's claim, which serves them all."""

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


@dataclass(frozen=True)
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


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session, inside the session's transaction. The big array
    statements run on it directly: asyncpg encodes uuid[] / text[] / timestamptz[] natively, where
    SQLAlchemy would process every element of every array."""
    connection = await session.connection()
    raw: Any = (await connection.get_raw_connection()).driver_connection
    if not raw.is_in_transaction():  # SQLAlchemy's adapter begins lazily, on its first statement
        await connection.execute(text("SELECT 1"))
    return raw


def _json(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


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
_LOCK_KEYS = text("""
    SELECT count(pg_advisory_xact_lock(k.h))
    FROM (
        SELECT DISTINCT CASE WHEN :buckets > 0 THEN hashtextextended(x, 0) % :buckets
                             ELSE hashtextextended(x, 0) END AS h
        FROM unnest(CAST(:keys AS text[])) AS x ORDER BY 1
    ) AS k
""")

_FIND_IDENTITIES = text("""
    SELECT i.kind, i.value, i.profile_id, p.user_id
    FROM unnest(CAST(:kinds AS text[]), CAST(:values AS text[])) AS k(kind, value)
    -- LATERAL: one primary-key probe per id, whatever the planner guesses about the table's size
    CROSS JOIN LATERAL (
        SELECT * FROM ingest.identities
        WHERE workspace_id = :workspace_id AND kind = k.kind AND value = k.value
    ) AS i
    JOIN ingest.profiles AS p ON p.id = i.profile_id AND p.workspace_id = i.workspace_id
""")


async def lock_identities(session: AsyncSession, workspace_id: uuid.UUID, keys: Sequence[Key]) -> None:
    """Serialise concurrent requests that touch the same ids (until commit), in a fixed order."""
    if keys:
        buckets = MAX_ID_LOCKS if len(keys) > MAX_ID_LOCKS else 0
        await session.execute(
            _LOCK_KEYS,
            {"keys": [f"{workspace_id}/{kind}/{value}" for kind, value in keys], "buckets": buckets},
        )


async def find_identities(
    session: AsyncSession, workspace_id: uuid.UUID, keys: Sequence[Key]
) -> list[KnownIdentity]:
    if not keys:
        return []
    result = await session.execute(
        _FIND_IDENTITIES,
        {"workspace_id": workspace_id, "kinds": [k for k, _ in keys], "values": [v for _, v in keys]},
    )
    return [KnownIdentity(*row) for row in result.all()]


_INSERT_PROFILES = text("""
    INSERT INTO ingest.profiles (id, workspace_id, user_id, created_at, updated_at)
    SELECT p.id, :workspace_id, p.user_id, :now, :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:user_ids AS text[])) AS p(id, user_id)
""")

_INSERT_IDENTITIES = text("""
    INSERT INTO ingest.identities (workspace_id, kind, value, profile_id)
    SELECT :workspace_id, i.kind, i.value, i.profile_id
    FROM unnest(CAST(:kinds AS text[]), CAST(:values AS text[]), CAST(:profile_ids AS uuid[]))
        AS i(kind, value, profile_id)
    ON CONFLICT (workspace_id, kind, value) DO NOTHING
""")

_SET_USER_IDS = text("""
    UPDATE ingest.profiles AS p SET user_id = u.user_id, updated_at = :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:user_ids AS text[])) AS u(id, user_id)
    WHERE p.workspace_id = :workspace_id AND p.id = u.id AND p.user_id IS NULL
""")

# A merge moves the source profile's identities, events, unpublished outbox rows and traits to the
# target (the target's traits win), then deletes the source. Several sources merging into one target
# in the same batch is rare; the traits of only one of them are carried over then.
_MERGE_STATEMENTS = [
    text(f"""
        UPDATE ingest.{table} AS t SET profile_id = m.target
        FROM unnest(CAST(:sources AS uuid[]), CAST(:targets AS uuid[])) AS m(source, target)
        WHERE t.workspace_id = :workspace_id AND t.profile_id = m.source
    """)  # noqa: S608 - table names are constants
    for table in ("identities", "events", "event_outbox")
] + [
    text("""
        UPDATE ingest.profiles AS t SET traits = s.traits || t.traits, updated_at = :now
        FROM unnest(CAST(:sources AS uuid[]), CAST(:targets AS uuid[])) AS m(source, target)
        JOIN ingest.profiles AS s ON s.id = m.source AND s.workspace_id = :workspace_id
        WHERE t.workspace_id = :workspace_id AND t.id = m.target
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
        WHERE p.workspace_id = :workspace_id AND p.id = m.source
    """),
]

_MERGE_TRAITS = text("""
    UPDATE ingest.profiles AS p SET traits = p.traits || CAST(t.traits AS jsonb), updated_at = :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:traits AS text[])) AS t(id, traits)
    WHERE p.workspace_id = :workspace_id AND p.id = t.id
""")


async def apply_plan(session: AsyncSession, workspace_id: uuid.UUID, plan: Plan, now: datetime) -> None:
    """Write what identity resolution decided: new profiles and identities, merges, traits."""
    scope: dict[str, Any] = {"workspace_id": workspace_id, "now": now}
    if plan.new_profiles:
        profiles = list(plan.new_profiles.items())
        await session.execute(
            _INSERT_PROFILES, {**scope, "ids": [p for p, _ in profiles], "user_ids": [u for _, u in profiles]}
        )
    if plan.new_identities:
        identities = list(plan.new_identities.items())
        await session.execute(
            _INSERT_IDENTITIES,
            {
                **scope,
                "kinds": [kind for (kind, _), _ in identities],
                "values": [value for (_, value), _ in identities],
                "profile_ids": [p for _, p in identities],
            },
        )
    if plan.user_ids:
        users = list(plan.user_ids.items())
        await session.execute(
            _SET_USER_IDS, {**scope, "ids": [p for p, _ in users], "user_ids": [u for _, u in users]}
        )
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
    rows = orjson.dumps(events, default=str).decode()  # default: the uuids asyncpg read back
    await connection.execute(_INSERT_EVENTS, workspace_id, received_at, rows)


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
