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
from typing import Any, Protocol

import orjson
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.dedupe import PROBE_MARGIN
from services.ingest.identity import Key, Plan
from services.ingest.models import DEDUPE_GENERATIONS
from shared.db import driver_connection


@dataclass
class NewEvent:
    id: str  # a uuid, as text
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


# -- plans ---------------------------------------------------------------------------------------


# Generic plans: Postgres otherwise re-plans these long statements on every call (a custom plan for
# each batch's values): over a quarter of its CPU per batch went to the planner. No seq scans: every
# statement reaches its rows by key, but a plan is made from the statistics of its day, and those
# lag a growing table (a new database's first minute, before autovacuum's first ANALYZE: plans made
# on the empty tables scanned cart_items on every batch while it grew to thousands of rows).
_PLAN_BY_KEY = """
    SELECT set_config('plan_cache_mode', 'force_generic_plan', true),
           set_config('enable_seqscan', 'off', true)
"""


async def plan_by_key(session: AsyncSession) -> None:
    """For the rest of the transaction, run prepared statements on their one cached plan, made to
    reach rows through indexes whatever the statistics say. tests/ingest/test_batch_reads.py holds
    every statement of a batch to it."""
    connection = await driver_connection(session)
    await connection.execute(_PLAN_BY_KEY)


# -- a batch's first two statements ---------------------------------------------------------------
#
# A round trip to Postgres costs ~100 us of CPU on this machine (the client's send and wake-up, the
# backend's), whatever the statement: a batch's statements are folded into as few as its order allows.

# Postgres has room for a few thousand locks across all sessions; a 500 KB batch of tiny messages
# can name 10,000+ ids, so beyond MAX_ID_LOCKS ids are locked by bucket (coarser, never a 500).
MAX_ID_LOCKS = 1000
_PLAN_AND_LOCK = """
    SELECT set_config('plan_cache_mode', 'force_generic_plan', true),
           set_config('enable_seqscan', 'off', true),
           (SELECT count(pg_advisory_xact_lock(k.h))
            FROM (
                SELECT DISTINCT CASE WHEN $2::int > 0 THEN hashtextextended(x, 0) % $2::int
                                     ELSE hashtextextended(x, 0) END AS h
                FROM unnest($1::text[]) AS x ORDER BY 1
            ) AS k)
"""


async def plan_by_key_and_lock(session: AsyncSession, workspace_id: uuid.UUID, keys: Sequence[Key]) -> None:
    """`plan_by_key`, and serialise concurrent requests that touch the same ids (until commit), in a
    fixed order. The locks must be held before the batch reads identities: a statement reads what
    was committed when it started, so the reads go in the next statement (`claim_and_find`)."""
    buckets = MAX_ID_LOCKS if len(keys) > MAX_ID_LOCKS else 0
    connection = await driver_connection(session)
    await connection.execute(
        _PLAN_AND_LOCK, [f"{workspace_id}/{kind}/{value}" for kind, value in keys], buckets
    )


# The messageIds claimed (the repeats left out), and the identities already known among the batch's
# ids with their profile's last activity (the visits continue it: services/ingest/deltas.py), as one
# result: claimed ids in `message_id`, known identities in the other columns.
# A messageId is claimed in the dedupe window's current generation unless the previous one holds it
# (services/ingest/dedupe.py); the generation is read here, in the claim's own statement. The
# previous one is not searched for a message known to be made after the current one started
# (`dedupe.PROBE_MARGIN`): `OR` tries its arguments in order, so the search runs only for the others.
# The claim goes in one lock order for every request, so concurrent retries cannot deadlock.
# Each id is a primary-key probe. The LIMITs keep the subqueries apart from the outer query, so
# the planner cannot turn them into a join that reads the whole workspace (it did while the tables
# grew faster than their statistics: every batch read all the workspace's identities and profiles).
PROBE_MARGIN_SECONDS = int(PROBE_MARGIN.total_seconds())
_CLAIM_AND_FIND = f"""
    WITH generation AS MATERIALIZED (  -- generation 0 if the window's row is missing: never none
        SELECT coalesce(d.generation, 0) AS current,  -- and from when a message is not looked up:
               extract(epoch FROM coalesce(d.started_at, 'infinity'))::float8 + {PROBE_MARGIN_SECONDS}
                   AS new_from
        FROM (SELECT) AS one LEFT JOIN ingest.dedupe_window AS d ON d.one_row
    ), window_now AS (
        SELECT current, (current + {DEDUPE_GENERATIONS - 1}) % {DEDUPE_GENERATIONS} AS previous, new_from
        FROM generation
    ), claimed AS (
        INSERT INTO ingest.received_messages (workspace_id, message_id, generation)
        SELECT $1::uuid, m.message_id, w.current
        FROM unnest($2::text[], $3::float8[]) AS m(message_id, made_at)
        CROSS JOIN window_now AS w
        WHERE m.made_at >= w.new_from OR NOT EXISTS (
            SELECT 1 FROM ingest.received_messages AS r
            WHERE r.workspace_id = $1::uuid AND r.message_id = m.message_id AND r.generation = w.previous
            OFFSET 0)  -- a key probe per id: as an anti-join, it read the whole previous generation
        ORDER BY m.message_id
        ON CONFLICT (workspace_id, message_id, generation) DO NOTHING
        RETURNING message_id
    )
    SELECT message_id, NULL AS kind, NULL AS value, NULL::uuid AS profile_id, NULL AS user_id,
           NULL::timestamptz AS last_seen_at
    FROM claimed
    UNION ALL
    SELECT NULL, k.kind, k.value, i.profile_id, p.user_id, a.last_seen_at
    FROM unnest($4::text[], $5::text[]) AS k(kind, value)
    CROSS JOIN LATERAL (
        SELECT profile_id FROM ingest.identities
        WHERE workspace_id = $1::uuid AND kind = k.kind AND value = k.value
        LIMIT 1
    ) AS i
    CROSS JOIN LATERAL (
        SELECT user_id FROM ingest.profiles WHERE id = i.profile_id AND workspace_id = $1::uuid LIMIT 1
    ) AS p
    LEFT JOIN LATERAL (
        SELECT last_seen_at FROM ingest.profile_aggregates
        WHERE profile_id = i.profile_id AND workspace_id = $1::uuid
        LIMIT 1
    ) AS a ON true
"""  # noqa: S608 - built from constants


@dataclass
class Claimed:
    fresh: set[str]  # the messageIds not seen before
    known: list[KnownIdentity]  # the identities among the keys asked for that exist already
    last_seen: dict[uuid.UUID, datetime]  # the last activity of their profiles, where there was any


class Claim(Protocol):
    """A message to claim (service.py's drafts are)."""

    @property
    def message_id(self) -> str: ...
    @property
    def made_at(self) -> float | None: ...  # when it was made (Unix time), where its clocks tell (dedupe.py)


async def claim_and_find(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    claims: Sequence[Claim],
    keys: Sequence[Key],
) -> Claimed:
    """Record the messageIds, and look up `keys` and their profiles' last activity: one round trip."""
    connection = await driver_connection(session)
    rows = await connection.fetch(
        _CLAIM_AND_FIND,
        workspace_id,
        [c.message_id for c in claims],
        [c.made_at for c in claims],
        [k for k, _ in keys],
        [v for _, v in keys],
    )
    claimed = Claimed(set(), [], {})
    for message_id, kind, value, profile_id, user_id, last_seen_at in rows:
        if message_id is not None:
            claimed.fresh.add(message_id)
            continue
        claimed.known.append(KnownIdentity(kind, value, profile_id, user_id))
        if last_seen_at is not None:
            claimed.last_seen[profile_id] = last_seen_at
    return claimed


# New profiles, their new identities, and the user ids and traits given to known profiles, as CTEs of
# the batch's write (`write_batch`), each list one JSON text ($3..$5). A profile is written by one
# of them only (a row updated twice in one statement keeps one of the two). The identities' foreign
# key is checked at the end of the statement, when the new profiles are in. Traits merge key by key,
# the batch's winning; a merge later in the transaction keeps them (the target's traits win there).
_WRITE_IDENTITIES = """
    new_profiles AS (
        INSERT INTO ingest.profiles (id, workspace_id, user_id, traits, created_at, updated_at)
        SELECT p.id, $1::uuid, p.user_id, coalesce(p.traits, '{}'), $2::timestamptz, $2::timestamptz
        FROM json_to_recordset($3::json) AS p(id uuid, user_id text, traits jsonb)
        RETURNING 1
    ), new_identities AS (
        INSERT INTO ingest.identities (workspace_id, kind, value, profile_id)
        SELECT $1::uuid, i.kind, i.value, i.profile_id
        FROM json_to_recordset($4::json) AS i(kind text, value text, profile_id uuid)
        ON CONFLICT (workspace_id, kind, value) DO NOTHING
        RETURNING 1
    ), updated_profiles AS (
        -- an upsert, so each profile is reached through its key; every profile named exists (found
        -- by this batch), so only the update happens, and only inside the workspace
        INSERT INTO ingest.profiles AS p (id, workspace_id, user_id, traits, updated_at)
        SELECT u.id, $1::uuid, u.user_id, coalesce(u.traits, '{}'), $2::timestamptz
        FROM json_to_recordset($5::json) AS u(id uuid, user_id text, traits jsonb)
        ON CONFLICT (id) DO UPDATE
        SET user_id = coalesce(p.user_id, excluded.user_id), traits = p.traits || excluded.traits,
            updated_at = excluded.updated_at
        WHERE p.workspace_id = excluded.workspace_id
        RETURNING 1
    )"""


def json_text(rows: Sequence[Any]) -> str:
    """Rows (dicts or dataclasses) as one JSON text for `json_to_recordset`. `default=str` writes
    Decimals and the uuids asyncpg reads back (its own type, which orjson does not know)."""
    return orjson.dumps(rows, default=str).decode()


def json_bytes(rows: Sequence[Any]) -> bytes:
    """`json_text` as the UTF-8 orjson wrote, for a `bytea` parameter read with `convert_from`. A
    text parameter of Korean text is decoded to a `str` and encoded back by asyncpg (~2 us per
    event's properties and context); bytes go as they are."""
    return orjson.dumps(rows, default=str)


# A merge moves the source profile's identities, events and traits to the target (the target's traits
# win), then deletes the source. Outbox rows stay as they are: the publisher finds the profiles gone
# and reads their events' profile back (`take_outbox`). Several sources merging into one target in
# the same batch is rare; the traits of only one of them are carried over then.
#
# Each statement starts from `merged`: the (source, target) pairs whose two profiles are this
# workspace's, each checked by its primary key. The rows to move are then reached through their
# profile alone. A workspace condition beside the profile's would let the planner search by the
# workspace, and with statistics that lag a growing workspace (3,000 profiles looked like 6 rows to
# it) it did: it read the whole workspace per merge, and, joining two such reads, its square.
# The events are the exception: their only profile index leads with the workspace; they are searched
# one source at a time, where that index is the planner's best path.
_MERGED = """
    WITH merged AS MATERIALIZED (
        SELECT m.source, m.target
        FROM unnest(CAST(:sources AS uuid[]), CAST(:targets AS uuid[])) AS m(source, target)
        WHERE (SELECT workspace_id FROM ingest.profiles WHERE id = m.source) = :workspace_id
          AND (SELECT workspace_id FROM ingest.profiles WHERE id = m.target) = :workspace_id
    )
"""


def _after_merged(statement: str) -> TextClause:
    return text(_MERGED + statement)


_MERGE_STATEMENTS = [
    _after_merged(
        """
        UPDATE ingest.identities AS t SET profile_id = merged.target
        FROM merged WHERE t.profile_id = merged.source
    """
    ),
    _after_merged(
        """
        UPDATE ingest.events AS t SET profile_id = moved.target
        FROM (
            SELECT e.id, e.occurred_at, merged.target
            FROM merged CROSS JOIN LATERAL (
                SELECT id, occurred_at FROM ingest.events
                WHERE workspace_id = :workspace_id AND profile_id = merged.source
                OFFSET 0  -- searched per source, never joined to a read of the workspace
            ) AS e
        ) AS moved
        WHERE t.id = moved.id AND t.occurred_at = moved.occurred_at
    """
    ),
    _after_merged(
        """
        UPDATE ingest.profiles AS t SET traits = s.traits || t.traits, updated_at = :now
        FROM merged JOIN ingest.profiles AS s ON s.id = merged.source
        WHERE t.id = merged.target
    """
    ),
    # the merged profile keeps the latest word on each consent topic of either profile
    _after_merged(
        """
        INSERT INTO ingest.consents AS c (profile_id, topic, workspace_id, granted, given_at, updated_at)
        SELECT DISTINCT ON (merged.target, s.topic)
               merged.target, s.topic, s.workspace_id, s.granted, s.given_at, :now
        FROM merged JOIN ingest.consents AS s ON s.profile_id = merged.source
        ORDER BY merged.target, s.topic, s.given_at DESC
        ON CONFLICT (profile_id, topic) DO UPDATE
        SET granted = excluded.granted, given_at = excluded.given_at, updated_at = excluded.updated_at
        WHERE excluded.given_at >= c.given_at
    """
    ),
    _after_merged("DELETE FROM ingest.profiles AS p USING merged WHERE p.id = merged.source"),
]


async def apply_merges(session: AsyncSession, workspace_id: uuid.UUID, plan: Plan, now: datetime) -> None:
    """The merges identity resolution decided (after `write_batch`)."""
    if not plan.merges:
        return
    scope = {
        "workspace_id": workspace_id,
        "now": now,
        "sources": [s for s, _ in plan.merges],
        "targets": [t for _, t in plan.merges],
    }
    for statement in _MERGE_STATEMENTS:
        await session.execute(statement, scope)


# -- events and outbox ---------------------------------------------------------------------------

# The events come as ONE JSON text (the `NewEvent`s written by orjson in C): Postgres parses it
# in C, where arrays of text would cost asyncpg a check and an encode per element, and a per-event
# orjson call for the properties and the context. Read as jsonb, the properties and the context are
# parsed once: `json_to_recordset` parsed each again into jsonb, and made a hash table per row
# (~6 us an event more).
_INSERT_EVENTS = """
    input AS (
        SELECT * FROM jsonb_to_recordset(convert_from({events}::bytea, 'UTF8')::jsonb) AS e(
            id uuid, profile_id uuid, message_id text, type text, name text, properties jsonb,
            context jsonb, occurred_at timestamptz)
    ), events AS (
        INSERT INTO ingest.events
            (id, workspace_id, profile_id, message_id, type, name, properties, context, occurred_at,
             received_at)
        SELECT id, $1::uuid, profile_id, message_id, type, name, properties, context, occurred_at,
               $2::timestamptz
        FROM input
    ), outbox AS (
        INSERT INTO ingest.event_outbox
            (workspace_id, event_ids, event_times, profile_ids, types, names, created_at)
        SELECT $1::uuid, array_agg(id), array_agg(occurred_at), array_agg(profile_id), array_agg(type),
               array_agg(name), $2::timestamptz
        FROM input  -- the aggregates of one group read the rows in one order: the arrays line up
    )"""
_EVENTS_ONLY = "WITH" + _INSERT_EVENTS.format(events="$3") + "\nSELECT 1"
_IDENTITIES_AND_EVENTS = "WITH" + _WRITE_IDENTITIES + "," + _INSERT_EVENTS.format(events="$6") + "\nSELECT 1"


async def write_batch(
    session: AsyncSession, workspace_id: uuid.UUID, plan: Plan, events: Sequence[NewEvent], now: datetime
) -> None:
    """The new profiles and identities the plan made, the user ids and traits it gives, the events,
    and their outbox row (one for them all), in one statement (so in the same transaction, and one
    round trip)."""
    if not events:
        return
    connection = await driver_connection(session)
    if not (plan.new_profiles or plan.new_identities or plan.user_ids or plan.traits):
        await connection.execute(_EVENTS_ONLY, workspace_id, now, json_bytes(events))
        return
    new = [{"id": p, "user_id": u, "traits": plan.traits.get(p)} for p, u in plan.new_profiles.items()]
    known = (plan.user_ids.keys() | plan.traits.keys()) - plan.new_profiles.keys()
    updated = [{"id": p, "user_id": plan.user_ids.get(p), "traits": plan.traits.get(p)} for p in known]
    await connection.execute(
        _IDENTITIES_AND_EVENTS,
        workspace_id,
        now,
        json_text(new),
        json_text([{"kind": k, "value": v, "profile_id": p} for (k, v), p in plan.new_identities.items()]),
        json_text(updated),
        json_bytes(events),
    )


@dataclass(frozen=True)
class OutboxEntry:
    """One `EventsRecorded` stream entry's body, built by Postgres (`take_outbox`)."""

    workspace_id: str
    events: int  # how many events the body holds
    body: bytes  # the entry's JSON: {"workspace_id": ..., "events": [...]}


@dataclass(frozen=True)
class TakenOutbox:
    rows: int  # outbox rows taken: fewer than asked for, and the outbox had no more
    entries: list[OutboxEntry]


# The oldest outbox rows, claimed and deleted, and their events written as stream entries' JSON, in
# one statement: the caller publishes them before it commits, so a failed publish rolls the delete
# back and the rows stay. Postgres writes the JSON where Python made an object per event and wrote
# them with orjson: the take cost 5.8-7.2 us an event (client and Postgres), now 4.0-4.3 (a
# throwaway benchmark, 3 rounds). The JSON is put together as text: json_build_object cost ~0.7 us
# an event more. Uuids need no escaping; the type, the name and the time go through to_json.
#
# - Entries follow the outbox's order: a run of rows of one workspace is cut into entries of at
#   most $2 events; another workspace's row starts a new run.
# - A profile merged into another since its events were stored is gone: those events are read back,
#   each by its primary key, for the profile they have now (a key probe per profile, then per event
#   of a gone profile only).
# - The names: only those segments and journeys key on (track, page, screen), as the contract says.
# - Times are written in the transaction's time zone: `take_outbox` sets it to UTC.
_TAKE_OUTBOX = """
    WITH taken AS (
        DELETE FROM ingest.event_outbox AS o
        WHERE o.id = ANY(ARRAY(
            SELECT id FROM ingest.event_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))
        RETURNING o.*
    ), starts AS (  -- a row starts a run when its workspace is not the previous row's
        SELECT *, (workspace_id IS DISTINCT FROM lag(workspace_id) OVER (ORDER BY id))::int AS starts_run
        FROM taken
    ), runs AS (
        SELECT *, sum(starts_run) OVER (ORDER BY id) AS run FROM starts
    ), placed AS (  -- with how many events the run's earlier rows hold
        SELECT *, coalesce(sum(cardinality(event_ids)) OVER (
            PARTITION BY run ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
        FROM runs
    ), events AS MATERIALIZED (
        SELECT r.run, (r.before + u.n - 1) / $2 AS entry, r.before + u.n AS k, r.workspace_id,
               u.event_id, u.profile_id, u.type, u.name, u.occurred_at
        FROM placed AS r
        CROSS JOIN LATERAL unnest(r.event_ids, r.profile_ids, r.types, r.names, r.event_times)
            WITH ORDINALITY AS u(event_id, profile_id, type, name, occurred_at, n)
    ), gone AS (
        SELECT s.workspace_id, s.profile_id
        FROM (SELECT DISTINCT workspace_id, profile_id FROM events) AS s
        WHERE NOT EXISTS (
            SELECT 1 FROM ingest.profiles AS p WHERE p.id = s.profile_id AND p.workspace_id = s.workspace_id)
    )
    SELECT (SELECT count(*) FROM taken)::int, e.workspace_id::text, count(*)::int,
           convert_to('{"workspace_id":"' || e.workspace_id || '","events":[' || string_agg(
               '{"event_id":"' || e.event_id
               || '","profile_id":"' || coalesce(now.profile_id, e.profile_id)
               || '","type":' || to_json(e.type)
               || ',"name":' || CASE WHEN e.type IN ('track', 'page', 'screen') AND e.name IS NOT NULL
                                     THEN to_json(e.name)::text ELSE 'null' END
               || ',"occurred_at":' || to_json(e.occurred_at) || '}',
               ',' ORDER BY e.k) || ']}', 'UTF8')
    FROM events AS e
    LEFT JOIN gone AS g ON g.profile_id = e.profile_id AND g.workspace_id = e.workspace_id
    LEFT JOIN LATERAL (
        SELECT x.profile_id FROM ingest.events AS x
        WHERE g.profile_id IS NOT NULL
          AND x.id = e.event_id AND x.occurred_at = e.occurred_at AND x.workspace_id = e.workspace_id
        LIMIT 1
    ) AS now ON true
    GROUP BY e.run, e.entry, e.workspace_id
    ORDER BY e.run, e.entry
"""
_TAKE_OUTBOX_SETTINGS = _PLAN_BY_KEY.rstrip() + ",\n           set_config('TimeZone', 'UTC', true)\n"


async def take_outbox(session: AsyncSession, limit: int, events_per_entry: int) -> TakenOutbox:
    """The events of the `limit` oldest outbox rows, oldest first, each with the profile it has now,
    as stream entries of at most `events_per_entry` events; the rows are deleted in this transaction
    (so back if it rolls back). Rows another publisher holds are skipped, so publishers can run side
    by side."""
    connection = await driver_connection(session)
    await connection.execute(_TAKE_OUTBOX_SETTINGS)
    rows = await connection.fetch(_TAKE_OUTBOX, limit, events_per_entry)
    entries = [OutboxEntry(workspace_id, events, body) for _, workspace_id, events, body in rows]
    return TakenOutbox(rows[0][0] if rows else 0, entries)
